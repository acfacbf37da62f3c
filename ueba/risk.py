"""User risk from open anomalies: total points and a bounded 0-100 risk.

Points are the plain sum of open anomaly scores. The bounded risk sorts the
scores from highest down and divides each by its rank to the power 1.5, so the
worst anomaly dominates and a pile of small ones cannot outweigh it: one
anomaly of 95 gives 95; ten of 20 give 40. Only anomalies with status `new`
inside the risk window count; reviewing one removes it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import Connection, select

from ueba.store.schema import anomalies

RANK_EXPONENT = 1.5
OPEN_STATUS = "new"
LEVELS = ("low", "medium", "high", "critical")


def risk_level(score: float) -> str:
    """low < 40, medium 40-69, high 70-89, critical >= 90."""
    if score >= 90:
        return "critical"
    if score >= 70:
        return "high"
    if score >= 40:
        return "medium"
    return "low"


def level_floor(level: str) -> int:
    """The lowest score of a level, for `risk>=high` style filters."""
    return {"low": 0, "medium": 40, "high": 70, "critical": 90}[level]


def bounded_risk(scores: Iterable[int]) -> int:
    ranked = sorted((s for s in scores if s > 0), reverse=True)
    total = sum(s / (rank**RANK_EXPONENT) for rank, s in enumerate(ranked, start=1))
    return min(100, round(total))


def open_scores(
    conn: Connection, tenant: str, now: datetime, window_days: int = 30, users: list[str] | None = None
) -> dict[str, list[int]]:
    """Open anomaly scores per user within the risk window."""
    q = select(anomalies.c.user_name, anomalies.c.risk_score).where(
        anomalies.c.tenant == tenant,
        anomalies.c.status == OPEN_STATUS,
        anomalies.c.time > now - timedelta(days=window_days),
    )
    if users is not None:
        q = q.where(anomalies.c.user_name.in_(users))
    by_user: dict[str, list[int]] = defaultdict(list)
    for user, score in conn.execute(q):
        by_user[user].append(score)
    return by_user


def user_risk(scores: list[int]) -> tuple[int, int, str]:
    """(total points, bounded risk, risk level) of one user's open scores."""
    risk = bounded_risk(scores)
    return sum(scores), risk, risk_level(risk)
