"""A run's user-day anomaly scores: each day's models and rule findings, calibrated against the population."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

import numpy as np
from sqlalchemy import Connection

from services.scorer.calibration import Calibration, Reference, RuleFinding, day_score
from services.scorer.context import RunContext
from services.scorer.model_anomalies import decisive_feature
from services.scorer.models import BY_NAME
from services.scorer.store import user_scores as store
from services.scorer.store.user_scores import HourlyScores, UserDays


def write_user_scores(ctx: RunContext, conn: Connection, days: tuple[datetime, datetime],
                      ignored: frozenset[str]) -> tuple[int, dict[tuple[str, date], float]]:
    """Replaces the scope's user-days from days[0] to days[1]; the number written, and the user-days
    whose own score (`UserDays.own_score`) is below the stored one, with it."""
    d0, d1 = days
    store.delete_days(conn, ctx.tenant, d0, d1, ctx.scope)
    models = sorted(ctx.weights)
    hourly = store.hourly_scores(conn, ctx.tenant, d0, d1, ctx.scope, ignored, models,
                                 [m for m in models if BY_NAME[m].mixed])
    calibration, findings = calibrate(conn, ctx.tenant, days, ignored, ctx.settings.baseline_days)
    scored = user_days(hourly, ctx.weights, calibration, findings)
    rows = store.insert_user_days(conn, ctx.tenant, ctx.run_id, scored)
    tenant_json, run_json = json.dumps(ctx.tenant), json.dumps(str(ctx.run_id))
    for user, day, score, hours, learning, top in rows:
        ctx.lines.append(
            f'{{"type":"user_score","tenant":{tenant_json},"user":{json.dumps(user)},"day":"{day.isoformat()}",'
            f'"score":{float(score)},"scored_hours":{hours},"learning":{"true" if learning else "false"},'
            f'"top_features":{json.dumps(top, separators=(",", ":"))},"run_id":{run_json}}}'
        )
    own = {(u, d): o for u, d, s, o in zip(scored.users, scored.days, scored.score, scored.own_score) if o < s}
    return len(rows), own


def calibrate(conn: Connection, tenant: str, days: tuple[datetime, datetime], ignored: frozenset[str],
              reference_days: int) -> tuple[Calibration, dict[tuple[str, date], list[RuleFinding]]]:
    """The population of the `reference_days` before each day of `days`, and the days' rule findings by user-day."""
    d0, d1 = days
    r0 = d0 - timedelta(days=reference_days)
    row_of: dict[tuple[str, date], int] = {}
    by_model: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for user, day, model, score in store.day_maxima(conn, tenant, r0, d1, ignored):
        by_model[model][0].append(row_of.setdefault((user, day), len(row_of)))
        by_model[model][1].append(float(score))
    found = [RuleFinding(*row) for row in store.rule_findings(conn, tenant, r0, d1)]
    reference = Reference(np.array([d.toordinal() for _, d in row_of], dtype=np.int64),
                          {m: (np.array(rows, dtype=np.int64), np.array(s, dtype=np.float64))
                           for m, (rows, s) in by_model.items()},
                          found)
    of_day: dict[tuple[str, date], list[RuleFinding]] = defaultdict(list)
    for f in found:
        if d0.date() <= f.day < d1.date():
            of_day[(f.user, f.day)].append(f)
    return Calibration(reference, reference_days), of_day


def user_days(hourly: HourlyScores, weights: dict[str, float], calibration: Calibration,
              findings: dict[tuple[str, date], list[RuleFinding]]) -> UserDays:
    """Each user-day's calibrated score, distinct scored hours, learning flag and strongest score."""
    names = sorted(set(hourly.model))
    rank = {m: i for i, m in enumerate(names)}
    model = np.array([rank[m] for m in hourly.model], dtype=np.int64)
    scaled = np.array([weights[m] for m in names], dtype=np.float64)[model] * hourly.score
    day = hourly.hour // 24
    keys: dict[tuple[str, int], int] = {}
    group = np.fromiter((keys.setdefault(k, len(keys)) for k in zip(hourly.users, day.tolist())),
                        dtype=np.int64, count=len(hourly.users))
    n = len(keys)
    strongest: list[dict[str, float]] = [{} for _ in range(n)]
    # model -> (hour, stored features) of its strongest score (ties: the earliest hour's)
    at_best: list[dict[str, tuple[int, list | None]]] = [{} for _ in range(n)]
    for g, m, hour, value, features in zip(group.tolist(), model.tolist(), hourly.hour.tolist(), hourly.score.tolist(),
                                           hourly.features):
        name = names[m]
        best = strongest[g].get(name, -1.0)
        if value > best or (value == best and hour < at_best[g][name][0]):
            strongest[g][name] = value
            at_best[g][name] = (hour, features)
    score, own = [], []
    for (user, d), models, best_rows in zip(keys, strongest, at_best):
        on = datetime.fromtimestamp(d * 86400, timezone.utc).date()
        deciding = {m: decisive_feature(f) for m, (_, f) in best_rows.items() if f}
        found = findings.get((user, on), ())
        score.append(day_score(calibration.evidence(on, models, found, deciding)))
        own.append(score[-1] if not any(f.linked for f in found) else
                   day_score(calibration.evidence(on, models, [f for f in found if not f.linked], deciding)))
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
        score=score,
        scored_hours=scored_hours.tolist(),
        learning=learning.tolist(),
        hour=[datetime.fromtimestamp(h * 3600, timezone.utc) for h in hourly.hour[best].tolist()],
        model=[names[m] for m in model[best].tolist()],
        own_score=own,
    )
