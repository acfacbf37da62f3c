"""A run's model anomalies: user-days at the anomaly threshold (past learning), described and upserted."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta

import numpy as np
from sqlalchemy import Connection

from services.scorer.context import RunContext
from services.scorer.models import BY_NAME
from services.scorer.store import event_scores, evidence, user_scores
from services.scorer.window import DAY, day_start
from services.scorer.wording import model_words, word_day
from ueba.risk import USER_RARITY_HALF, decades_risk, rarity_decades
from ueba.store.anomalies import AnomalyRecord, withdraw_unreviewed, write_anomalies


# How many accounts fail to log on from the user's origin is the source's doing (a spray), not
# the account's: like a rule spray's linked account finding, such a day's anomaly carries half
# the day's score into the account's risk, while the user-day score itself keeps ranking it.
SOURCE_PATTERN = "max_accounts_failing_from_origin"


def decisive_feature(features: list) -> str:
    """The name of the feature with the largest share of an hourly score's surprise."""
    named = [f for f in features or () if isinstance(f, dict)]
    return str(max(named, key=lambda f: float(f.get("share") or 0.0)).get("name", "")) if named else ""


def anomaly_score(decisive: str, decades: float) -> int:
    """The anomaly's risk score, 1-100, from how rare a day this strong is for one of the
    organisation's users in a month (`DayRarity.decades`), halved when the source's pattern decides it."""
    score = decades_risk(decades, USER_RARITY_HALF)
    if decisive.split(".")[-1] == SOURCE_PATTERN:
        score /= 2.0
    return int(min(100, max(1, round(score))))


def dedup_key(user: str, day: date) -> str:
    return f"model:{user}:{day.isoformat()}"


def write_model_anomalies(ctx: RunContext, conn: Connection, days: tuple[datetime, datetime],
                          own: dict[tuple[str, date], float]) -> int:
    """Upserts the anomalies of the scope's user-days from days[0] to days[1]; the number written.

    A user-day is judged by its own score where `own` gives one (`user_scores.write_user_scores`): a
    spray's account carries the source's attack into its risk by the linked finding alone."""
    threshold = ctx.settings.anomaly_threshold
    day_rows = [(u, d, own.get((u, d), s), learning)
                for u, d, s, learning in user_scores.scores_of_days(conn, ctx.tenant, *days, ctx.scope)]
    high = [(u, d, s) for u, d, s, learning in day_rows if s >= threshold and not learning]
    # Re-runs that no longer reach the threshold withdraw their unreviewed anomaly.
    withdraw_unreviewed(conn, ctx.tenant, "model",
                        [dedup_key(u, d) for u, d, s, learning in day_rows if s < threshold or learning])
    records = []
    if high:
        span = ctx.settings.baseline_days
        first, last = min(d for _, d, _ in high), max(d for _, d, _ in high)
        rarity = DayRarity(user_scores.reference_days(conn, ctx.tenant, first - timedelta(days=span), last), span)
        records = [describe(ctx, conn, user, day, float(score), rarity) for user, day, score in high]
    # The anomalies reach anomaly.log and every other destination through the outbox
    # (services/delivery), in the one schema of every finding.
    write_anomalies(conn, records, refresh_unreviewed=True, risk_window_days=ctx.settings.risk_window_days)
    return len(records)


class DayRarity:
    """How rare a day's score is among the stored user-days before it (`user_scores.reference_days`),
    read per user and month."""

    def __init__(self, rows: list[tuple[str, date, float]], days: int):
        self._days = days
        users = sorted({u for u, _, _ in rows})
        index = {u: i for i, u in enumerate(users)}
        self._user = np.array([index[u] for u, _, _ in rows], dtype=np.int64)
        self._ordinal = np.array([d.toordinal() for _, d, _ in rows], dtype=np.int64)
        self._score = np.array([s for _, _, s in rows], dtype=np.float64)

    def decades(self, day: date, score: float) -> float:
        """-log10 of the chance that one user shows a day at least `score` within `days` days.

        The share of the user-days before `day` (within `days`) scoring at least as high, times the
        days a user is scored in such a window: a user's risk holds a month of days. With the whole
        window behind it, about the share of users with such a day; with less, what that share
        would be, so an organisation's first days cannot make a day rarer than they have seen."""
        inside = (self._ordinal >= (day - timedelta(days=self._days)).toordinal()) & (self._ordinal < day.toordinal())
        user_days = int(inside.sum())
        if user_days == 0:
            return 0.0
        as_strong = int((inside & (self._score >= score)).sum())
        users = np.unique(self._user[inside]).size
        covered = np.unique(self._ordinal[inside]).size
        days_per_user = user_days / users * self._days / covered
        return max(0.0, rarity_decades(as_strong, user_days) - math.log10(days_per_user))


def describe(ctx: RunContext, conn: Connection, user: str, day: date, score: float,
             rarity: DayRarity) -> AnomalyRecord:
    """The anomaly of one user-day: its strongest hourly score names the model, hour and events."""
    start = day_start(day)
    rows = event_scores.scores_of_day(conn, ctx.tenant, user, start)
    ranked = sorted(rows, key=lambda r: (-ctx.weights.get(r.model, 1.0) * r.score, r.hour, r.model))
    top = ranked[0]
    wording = word_day(ranked, ctx.weights, ctx.settings.mean_threshold,
                       lambda entity_type, hour: evidence.first_seen_in(conn, ctx.tenant, user, entity_type, hour))
    model = BY_NAME[top.model]
    decisive = decisive_feature(top.features)
    proof = {
        "event_ids": evidence.event_ids(conn, ctx.tenant, user, top.hour),
        "day_score": score,
        "top_model": top.model,
        "top_hour": top.hour.isoformat(),
        "model_scores": {m: max(r.score for r in rows if r.model == m) for m in sorted({r.model for r in rows})},
        "features": wording.features,
        "decisive_feature": decisive,
    }
    return AnomalyRecord(
        tenant=ctx.tenant, user=user, source="model", profile_id=top.model,
        profile_name=f"{model_words(model.name)} model", profile_kind=top.model,
        risk_score=anomaly_score(decisive, rarity.decades(day, score)), description=wording.description, dimension=model.dimension,
        time=top.hour, window_start=start, window_end=start + DAY,
        evidence=json.loads(json.dumps(proof, default=str)), dedup_key=dedup_key(user, day),
    )
