"""What every stage of a scoring run is given: the run, its users, its settings and its clocks."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable

from services.scorer.settings import ScorerSettings
from ueba.leases import LeaseManager


@dataclass(frozen=True)
class ScheduledBuckets:
    """A scheduled run's share: the fire time and the leased buckets with their tokens."""

    fire: datetime
    tokens: dict[int, int]
    leases: LeaseManager


@dataclass(frozen=True)
class UserScope:
    """The users a run scores: those of `buckets` (of N), narrowed to `users` when given."""

    n: int
    buckets: tuple[int, ...]
    users: frozenset[str] | None = None

    @property
    def every_bucket(self) -> bool:
        return len(self.buckets) == self.n

    def without(self, buckets: set[int]) -> UserScope:
        return replace(self, buckets=tuple(b for b in self.buckets if b not in buckets))


@dataclass
class StageSeconds:
    """Seconds a run spent per stage, summed over its days (the run's `stage_seconds` figure)."""

    features: float = 0.0
    load: float = 0.0
    share_baselines: float = 0.0
    score: float = 0.0
    write_event_scores: float = 0.0

    def figure(self, total: float) -> dict[str, float]:
        days = self.load + self.share_baselines + self.score + self.write_event_scores
        return {
            "features": self.features,
            "load": round(self.load, 3),
            "share_baselines": round(self.share_baselines, 3),
            "score": round(self.score, 3),
            "write_event_scores": round(self.write_event_scores, 3),
            "user_scores_and_anomalies": round(total - days, 3),
        }


@dataclass(frozen=True)
class RunContext:
    """One run's identity and inputs. `check(stage)` is the fail point tests crash runs at;
    `lines` collects the anomaly.log lines, written only once the run committed."""

    run_id: str
    tenant: str
    start: datetime
    end: datetime
    scope: UserScope
    scheduled: ScheduledBuckets | None
    settings: ScorerSettings
    weights: dict[str, float]
    check: Callable[[str], None]
    lines: list[str] = field(default_factory=list)
    seconds: StageSeconds = field(default_factory=StageSeconds)

    @property
    def sharing(self) -> bool:
        """A scheduled run over some buckets shares baselines with the other replicas of its fire."""
        return self.scheduled is not None and not self.scope.every_bucket
