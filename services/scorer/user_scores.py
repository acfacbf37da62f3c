"""A run's user-day anomaly scores: the conditioned mean of every stored hourly score of each day."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import Connection

from services.scorer.context import RunContext
from services.scorer.scoring import conditioned_mean
from services.scorer.store import user_scores as store
from services.scorer.store.user_scores import HourlyScores, UserDays


def write_user_scores(ctx: RunContext, conn: Connection, days: tuple[datetime, datetime],
                      ignored: frozenset[str]) -> int:
    """Replaces the scope's user-days from days[0] to days[1]; the number written."""
    d0, d1 = days
    store.delete_days(conn, ctx.tenant, d0, d1, ctx.scope)
    models = sorted(ctx.weights)
    hourly = store.hourly_scores(conn, ctx.tenant, d0, d1, ctx.scope, ignored, models)
    rows = store.insert_user_days(conn, ctx.tenant, ctx.run_id, user_days(hourly, ctx.weights,
                                                                           ctx.settings.mean_threshold))
    tenant_json, run_json = json.dumps(ctx.tenant), json.dumps(str(ctx.run_id))
    for user, day, score, hours, learning, top in rows:
        ctx.lines.append(
            f'{{"type":"user_score","tenant":{tenant_json},"user":{json.dumps(user)},"day":"{day.isoformat()}",'
            f'"score":{float(score)},"scored_hours":{hours},"learning":{"true" if learning else "false"},'
            f'"top_features":{json.dumps(top, separators=(",", ":"))},"run_id":{run_json}}}'
        )
    return len(rows)


def user_days(hourly: HourlyScores, weights: dict[str, float], threshold: float) -> UserDays:
    """Each user-day's conditioned mean, distinct scored hours, learning flag and strongest score."""
    names = sorted(set(hourly.model))
    rank = {m: i for i, m in enumerate(names)}
    model = np.array([rank[m] for m in hourly.model], dtype=np.int64)
    scaled = np.array([weights[m] for m in names], dtype=np.float64)[model] * hourly.score
    day = hourly.hour // 24
    keys: dict[tuple[str, int], int] = {}
    group = np.fromiter((keys.setdefault(k, len(keys)) for k in zip(hourly.users, day.tolist())),
                        dtype=np.int64, count=len(hourly.users))
    n = len(keys)
    score = conditioned_mean(group, scaled, threshold)
    span = int(hourly.hour.max() - hourly.hour.min()) + 1 if n else 1
    distinct = np.unique(group * span + (hourly.hour - (hourly.hour.min() if n else 0)))
    scored_hours = np.bincount(distinct // span, minlength=n)
    learning = np.bincount(group, weights=hourly.learning.astype(np.float64), minlength=n) > 0
    # The strongest: highest scaled score, then the earliest hour, then the model name.
    order = np.lexsort((model, hourly.hour, -scaled, group))
    best = order[np.r_[0, np.flatnonzero(np.diff(group[order])) + 1]] if n else order
    pairs = list(keys)
    return UserDays(
        users=[u for u, _ in pairs],
        days=[datetime.fromtimestamp(d * 86400, timezone.utc).date() for _, d in pairs],
        score=score.tolist(),
        scored_hours=scored_hours.tolist(),
        learning=learning.tolist(),
        hour=[datetime.fromtimestamp(h * 3600, timezone.utc) for h in hourly.hour[best].tolist()],
        model=[names[m] for m in model[best].tolist()],
    )
