"""Risk of a user (or entity) from its open anomalies: total points and a 0-99 risk.

The formula and its reasons are in docs/architecture.md ("Risk").
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import Connection, func, select

from ueba.store.schema import anomalies

# Evidence of the k-th strongest finding counts 1/k^2: the worst finding sets
# the level, further independent findings raise it, a pile of weak ones cannot.
RANK_EXPONENT = 2.0
# A finding's score read as a probability is neutral at this value: weaker
# findings add nothing to a stronger one.
NEUTRAL = 0.2
# One finding alone reads as at most this probability, and no sum of them
# reaches certainty: risk keeps ranking at the top of the scale.
MAX_ONE = 0.97
MAX_RISK = 99
# Only open findings count. Reviewed ones and those a suppression rule suppressed (status
# 'suppressed') count nowhere; a down-weighted finding stays open at its lowered score.
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


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def ranked_evidence(values: Iterable[float], neutral: float = 0.0) -> float:
    """The strongest value, plus what each further one carries above `neutral` divided by rank^2.

    The one way evidence is combined: a user's findings into risk (in log-odds) and a
    user-day's sources into its calibrated score (in decades of tail probability).
    """
    ranked = sorted(values, reverse=True)
    if not ranked:
        return 0.0
    total = ranked[0]
    for rank, value in enumerate(ranked[1:], start=2):
        total += max(0.0, value - neutral) / rank**RANK_EXPONENT
    return total


# Risk from rarity: how many of a population of comparable observations were at least as strong,
# linear in log-odds, 90 (critical) one decade rarer than 50. A source's windows: 50 at 1 in 100,
# critical at 1 in 1,000. A user's levels are about users (a few in a hundred critical at most):
# a model anomaly reads how likely a day as strong is for one user in a month, 50 at one user in
# ten, critical at one in a hundred. Levels thus mean the same share in every organisation.
RARITY_HALF = 2.0
USER_RARITY_HALF = 1.0
RARITY_SLOPE = math.log(9.0)  # per decade


def rarity_decades(as_strong: int, population: int) -> float:
    """-log10 of the share of a population at least as strong, counting the observation itself."""
    return -math.log10((as_strong + 1) / (population + 1))


def decades_risk(decades: float, half: float = RARITY_HALF) -> float:
    """0-100 from a tail probability of 10^-decades: 50 at 10^-half, 90 a decade further."""
    return 100.0 / (1.0 + math.exp(-RARITY_SLOPE * (decades - half)))


def bounded_risk(scores: Iterable[int]) -> int:
    """0-99: the strongest score, raised by the log-odds each further score adds above NEUTRAL.

    One finding of s gives s (at most 97); [70, 70] gives 80; [90, 70] 94;
    any number of findings at or below 20 gives the strongest of them.
    """
    log_odds = [_logit(min(MAX_ONE, s / 100.0)) for s in scores if s > 0]
    if not log_odds:
        return 0
    combined = ranked_evidence(log_odds, neutral=_logit(NEUTRAL))
    return min(MAX_RISK, round(100.0 / (1.0 + math.exp(-combined))))


def open_scores(
    conn: Connection, tenant: str, now: datetime, window_days: int = 30, users: list[str] | None = None
) -> dict[str, list[int]]:
    """Open scores per account within the risk window: one per incident (its strongest open finding)."""
    return open_entity_scores(conn, tenant, now, window_days, "user", users)


def open_entity_scores(
    conn: Connection, tenant: str, now: datetime, window_days: int, entity_type: str, entities: list[str] | None = None
) -> dict[str, list[int]]:
    """Open scores per entity of a type within the risk window.

    An incident counts once, at its strongest open finding; a finding outside any
    incident counts alone.
    """
    a = anomalies.c
    q = (
        select(a.entity, func.max(a.risk_score))
        .where(a.tenant == tenant, a.entity_type == entity_type, a.status == OPEN_STATUS,
               a.time > now - timedelta(days=window_days))
        .group_by(a.entity, func.coalesce(a.incident_id, a.id))
    )
    if entities is not None:
        q = q.where(a.entity.in_(entities))
    by_entity: dict[str, list[int]] = defaultdict(list)
    for entity, score in conn.execute(q):
        by_entity[entity].append(score)
    return by_entity


def user_risk(scores: list[int]) -> tuple[int, int, str]:
    """(total points, bounded risk, risk level) of one user's open scores."""
    risk = bounded_risk(scores)
    return sum(scores), risk, risk_level(risk)
