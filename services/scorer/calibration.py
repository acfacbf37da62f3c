"""A user-day's evidence on one calibrated scale: each source against the population, then combined.

Sources are the behaviour models (the day's strongest hourly score of each) and the rule profile
kinds (the day's strongest finding of each about the user). The reasons are in the README
("Calibrated user-day score").
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Iterable

import numpy as np

from services.scorer.models import BY_NAME, RESTATING
from services.scorer.scoring import MAX_SURPRISE, surprise_of_score
from ueba.risk import rarity_decades

# The population's tail is read at these shares of user-days: low enough that one attack on
# many accounts (a spray is a few percent of a month's user-days) does not move them.
TAIL_LOW = 0.2
TAIL_HIGH = 0.05
DECADES = math.log10(TAIL_LOW / TAIL_HIGH)
MIN_SCALE = 0.25  # decades of nominal surprise between the two levels, at least
MIN_REFERENCE = 100  # reference user-days below which sources keep their nominal surprise
# The 0-100 scale, linear in log-odds of the combined evidence (decades of tail probability): 50 at
# 1e-3, and 90 at 1e-8, where one model's strongest score (100) stands, so that only several
# sources together, or one beyond anything the population shows, reach the top.
HALF = 3.0
NINETY = 8.0
SLOPE = math.log(9.0) / (NINETY - HALF)


@dataclass(frozen=True)
class Tail:
    """Where the population's nominal surprise of one source stands at TAIL_LOW, and its spread to TAIL_HIGH."""

    low: float
    scale: float


def population_tail(surprises: np.ndarray, user_days: int) -> Tail | None:
    """The tail of one source over `user_days` reference user-days, of which those with the source
    have the nominal surprises given (the others count as 0); None with too few user-days."""
    if user_days < MIN_REFERENCE:
        return None
    ordered = np.sort(surprises)[::-1]

    def upper(share: float) -> float:
        k = int(share * user_days)
        return float(ordered[k]) if k < ordered.size else 0.0

    low = upper(TAIL_LOW)
    return Tail(low, max(upper(TAIL_HIGH) - low, MIN_SCALE))


def rule_evidence(surprise: float, as_strong: int, user_days: int) -> float:
    """A rule finding: its nominal surprise, at most the rarity of findings of its kind this strong
    (counted by incident, so a spray over many accounts is one) among the reference user-days."""
    if user_days < MIN_REFERENCE:
        return surprise
    return min(surprise, rarity_decades(as_strong, user_days))


def joint_decades(values: Iterable[float]) -> float:
    """Independent sources' evidence together, in decades: the best, over j, of the j strongest read as one.

    The j strongest's tail probabilities multiply to t; the chance that j uniform ones multiply to
    t or less is t * sum_{k<j} ln(1/t)^k / k! (Fisher's product), and the m sources hold
    C(m, j) sets of j where there are m single sources to pick the strongest from. So one source
    alone reads as itself, a second adds only what beats both corrections (a weak one adds
    nothing), and a pile of weak ones reads less than one strong source (six at 1 under one at 4).
    """
    ranked = sorted(values, reverse=True)
    m = len(ranked)
    best = total = 0.0
    for j, value in enumerate(ranked, start=1):
        total += value
        ln_t = total * math.log(10.0)
        product = math.log10(sum(ln_t**k / math.factorial(k) for k in range(j)))
        best = max(best, total - product - math.log10(math.comb(m, j) / m))
    return best


def day_score(evidence: float) -> float:
    """Combined evidence in decades -> 0-100, linear in log-odds (50 at HALF, 90 at NINETY)."""
    return 100.0 / (1.0 + math.exp(-SLOPE * (evidence - HALF)))


@dataclass(frozen=True)
class RuleFinding:
    user: str
    day: date
    kind: str
    dimension: str
    score: int
    incident: str
    # The rarity, in decades, that the finding's source measured among its own population (a
    # spray's among the tenant's source-windows); None where the score is the profile's setting.
    decades: float | None = None
    # Linked to the source that targeted the account: the source's doing, not the account's.
    linked: bool = False


@dataclass(frozen=True)
class Reference:
    """The population a day is judged against: every scored user-day of the days before it."""

    user_days: np.ndarray  # the day (date ordinal) of each distinct user-day, past learning, not ignored
    # model -> (row in user_days, strongest score) of the user-days the model scored
    model_maxima: dict[str, tuple[np.ndarray, np.ndarray]]
    findings: list[RuleFinding]


@dataclass(frozen=True)
class DayYardstick:
    """How one day's user-days are judged: each source's tail among the reference user-days."""

    user_days: int
    tails: dict[str, Tail | None]
    strength_by_kind: dict[str, list[int]]  # rule kind -> strongest score of each reference incident


class Calibration:
    """Per day of a run: its yardstick from the reference user-days of the `days` before it."""

    def __init__(self, reference: Reference, days: int):
        self._reference = reference
        self._days = days
        self._per_day: dict[date, DayYardstick] = {}

    def yardstick(self, day: date) -> DayYardstick:
        found = self._per_day.get(day)
        if found is None:
            found = self._per_day[day] = self._measure(day)
        return found

    def _measure(self, day: date) -> DayYardstick:
        ref = self._reference
        first, end = (day - timedelta(days=self._days)).toordinal(), day.toordinal()
        inside = (ref.user_days >= first) & (ref.user_days < end)
        n = int(inside.sum())
        tails: dict[str, Tail | None] = {}
        for model, (rows, scores) in ref.model_maxima.items():
            tails[model] = population_tail(surprise_of_score(scores[inside[rows]]), n)
        strongest: dict[tuple[str, str], int] = defaultdict(int)
        for f in ref.findings:
            if first <= f.day.toordinal() < end:
                strongest[(f.kind, f.incident)] = max(strongest[(f.kind, f.incident)], f.score)
        by_kind: dict[str, list[int]] = defaultdict(list)
        for (kind, _), score in strongest.items():
            by_kind[kind].append(score)
        return DayYardstick(n, tails, dict(by_kind))

    @staticmethod
    def _model_evidence(yardstick: DayYardstick, model: str, scores: np.ndarray) -> np.ndarray:
        surprise = surprise_of_score(scores)
        tail = yardstick.tails.get(model)
        if tail is None:
            return surprise
        z = -math.log10(TAIL_LOW) + (surprise - tail.low) / tail.scale * DECADES
        return np.minimum(np.maximum(z, 0.0), surprise)

    @staticmethod
    def _rule_evidence(yardstick: DayYardstick, f: RuleFinding) -> float:
        surprise = float(surprise_of_score(np.float64(f.score)))
        as_strong = sum(1 for s in yardstick.strength_by_kind.get(f.kind, ()) if s >= f.score)
        counted = rule_evidence(surprise, as_strong, yardstick.user_days)
        # A measured rarity is a tail probability already: the user-days' count would only bound
        # it by the size of the organisation.
        return counted if f.decades is None else max(counted, min(f.decades, MAX_SURPRISE))

    def evidence(self, day: date, models: dict[str, float], findings: Iterable[RuleFinding],
                 deciding: dict[str, str] | None = None) -> float:
        """Combined evidence of one user-day: the strongest source per dimension, the dimensions read
        together (`joint_decades`); a model's evidence counts in the dimension of the feature
        deciding it (`deciding`: model -> feature name), and restating dimensions only stand alone."""
        yardstick = self.yardstick(day)
        best: dict[str, float] = defaultdict(float)
        for model, score in models.items():
            z = float(self._model_evidence(yardstick, model, np.array([score], dtype=np.float64))[0])
            dimension = BY_NAME[model].dimension_of((deciding or {}).get(model))
            best[dimension] = max(best[dimension], z)
        for f in findings:
            key = f.dimension or f"rule:{f.kind}"
            best[key] = max(best[key], self._rule_evidence(yardstick, f))
        restating = max((best.pop(d) for d in RESTATING if d in best), default=0.0)
        return max(joint_decades(best.values()), restating)
