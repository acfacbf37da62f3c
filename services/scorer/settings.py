"""Scorer settings: schedule, baselines, thresholds and the anomaly.log sink."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ueba.anomaly_log import check_target
from ueba.leases import LeaseSettings
from ueba.settings import SettingsError, env_field

_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_EVERY = re.compile(r"^every\s+(\d+)\s*([smh])$")
_UNIT = {"s": 1, "m": 60, "h": 3600}


def parse_every(raw: str) -> int | None:
    """'every 15m' -> 900 (seconds between fires, aligned to the epoch); None when not that form."""
    m = _EVERY.match(raw.strip().lower())
    if not m:
        return None
    seconds = int(m.group(1)) * _UNIT[m.group(2)]
    if not 1 <= seconds <= 86_400:
        raise SettingsError(f"UEBA_SCORING_SCHEDULE={raw!r}: an interval of 1 second to 24 hours")
    return seconds


def parse_schedule(raw: str) -> tuple[tuple[int, int], ...]:
    """'00:00,06:00' -> ((0, 0), (6, 0)); '' or 'off' -> () (no scheduled runs)."""
    raw = raw.strip()
    if raw.lower() in ("", "off", "none"):
        return ()
    if parse_every(raw) is not None:
        return ()
    times = []
    for part in raw.split(","):
        m = _TIME.match(part.strip())
        if not m:
            raise SettingsError(f"UEBA_SCORING_SCHEDULE={raw!r}: {part.strip()!r} is not HH:MM (UTC)")
        times.append((int(m.group(1)), int(m.group(2))))
    return tuple(sorted(set(times)))


def parse_weights(raw: str) -> dict[str, float]:
    """'authentication=1,login_time=0.4' -> {name: weight}."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or weight < 0:
            raise SettingsError(f"UEBA_SCORING_MODEL_WEIGHTS: {part!r} is not model=weight with weight >= 0")
        weights[name.strip()] = weight
    return weights


@dataclass(frozen=True)
class ScorerSettings(LeaseSettings):
    schedule: str = env_field(
        "UEBA_SCORING_SCHEDULE", "00:00,06:00,12:00,18:00",
        "UTC times of scheduled runs (HH:MM, comma separated), or an interval (every 30m); off disables",
    )
    baseline_days: int = env_field("UEBA_BASELINE_DAYS", 30, "days of history a user's baseline covers")
    mean_threshold: float = env_field(
        "UEBA_SCORING_MEAN_THRESHOLD", 60.0, "threat-weighted hourly scores under this are left out of a model anomaly's description"
    )
    anomaly_threshold: float = env_field(
        "UEBA_SCORING_ANOMALY_THRESHOLD", 70.0, "user-days scoring at least this become model anomalies"
    )
    model_weights: str = env_field(
        "UEBA_SCORING_MODEL_WEIGHTS", "", "threat-relevance weights overriding the defaults, e.g. login_time=0.3"
    )
    anomaly_log: str = env_field(
        "UEBA_ANOMALY_LOG", "", "where score lines go: empty for stdout, a file path, syslog://host:port, or off"
    )
    min_peer_group: int = env_field("UEBA_MIN_PEER_GROUP", 3, "departments smaller than this are clustered instead")
    max_range_days: int = env_field("UEBA_SCORING_MAX_RANGE_DAYS", 62, "longest window one RunScoring may score")
    score_retention_days: int = env_field(
        "UEBA_SCORE_RETENTION_DAYS", 90,
        "drop event-score partitions older than this many days; 0: keep forever, else at least 2. Old hourly "
        "scores back only the per-user hour timelines (user-day scores, anomalies and their explanations stay); "
        "90: three 30-day risk windows",
    )

    def validate(self) -> None:
        super().validate()
        parse_schedule(self.schedule)
        weights = parse_weights(self.model_weights)
        from services.scorer.models import MODELS  # late: models do not depend on settings

        unknown = sorted(set(weights) - {m.name for m in MODELS})
        if unknown:
            raise SettingsError(f"UEBA_SCORING_MODEL_WEIGHTS: unknown models {unknown}")
        if self.min_baseline_days > self.baseline_days:
            raise SettingsError(
                f"UEBA_MIN_BASELINE_DAYS={self.min_baseline_days}: must be at most UEBA_BASELINE_DAYS ({self.baseline_days})"
            )
        if not 7 <= self.baseline_days <= 365:
            raise SettingsError(f"UEBA_BASELINE_DAYS={self.baseline_days}: 7 to 365")
        if not 0 <= self.mean_threshold <= 100:
            raise SettingsError(f"UEBA_SCORING_MEAN_THRESHOLD={self.mean_threshold}: 0 to 100")
        if not 1 <= self.anomaly_threshold <= 100:
            raise SettingsError(f"UEBA_SCORING_ANOMALY_THRESHOLD={self.anomaly_threshold}: 1 to 100")
        if self.min_peer_group < 1:
            raise SettingsError(f"UEBA_MIN_PEER_GROUP={self.min_peer_group}: at least 1")
        if self.max_range_days < 1:
            raise SettingsError(f"UEBA_SCORING_MAX_RANGE_DAYS={self.max_range_days}: at least 1")
        if self.score_retention_days < 0 or self.score_retention_days == 1:
            # A scheduled run's 24 hours reach into yesterday, whose earlier hours' scores it reads.
            raise SettingsError(f"UEBA_SCORE_RETENTION_DAYS={self.score_retention_days}: 0 (keep forever) or at least 2")
        check_target(self.anomaly_log)

    def weights(self) -> dict[str, float]:
        from services.scorer.models import MODELS

        return {**{m.name: m.weight for m in MODELS}, **parse_weights(self.model_weights)}

    def schedule_times(self) -> tuple[tuple[int, int], ...]:
        return parse_schedule(self.schedule)

    def schedule_every(self) -> int | None:
        return parse_every(self.schedule)
