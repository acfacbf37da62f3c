"""The shared interface of profile kinds.

A detector is built from a validated ProfileSpec and is pure: it is fed
EventRecords in (roughly) time order and returns Firings. It keeps the state
it needs (windows, last locations, seen entities) in memory; the evaluator
rebuilds that state on start by replaying the last `lookback_seconds` of
events and, for kinds with long memories, by seeding summaries (see
`history`). PreviewProfile and the live evaluator use the same classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Iterable

from services.profiles.kinds.params import Param, ParameterError, validate
from services.profiles.kinds.trust import SourceTrust
from services.profiles.records import EventRecord, utc
from services.profiles.windows import BurstWindows
from ueba.store.anomalies import AnomalyRecord

DIMENSIONS = ("authentication", "data", "location", "host", "application", "time", "peer")


@dataclass(frozen=True)
class ProfileSpec:
    """A validated profile definition."""

    id: str
    name: str
    kind: str
    risk_score: int
    parameters: dict[str, Any]
    applications: tuple[str, ...] = ()
    dimension: str = ""
    tenant: str = "default"
    enabled: bool = True
    description: str = ""
    updated_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class HistoryNeeds:
    """Summaries a long-memory detector wants seeded before replay."""

    seen_entities: tuple[str, ...] = ()  # entity types: application, country, host, ...
    days: int = 0
    daily_uploads: bool = False
    failure_spread: tuple[float, ...] = ()  # window lengths: distinct accounts failing per source and window (password spray)
    users: bool = True  # (user, department, first seen)


class ProfileDetector(ABC):
    kind: ClassVar[str]
    default_dimension: ClassVar[str]
    parameters: ClassVar[tuple[Param, ...]]
    # Event types the detector looks at; None: every type. Kinds whose parameters name event
    # types narrow it per instance: the evaluator routes events by it and replays read by it.
    event_types: frozenset[str] | None = None
    title: ClassVar[str] = ""
    # Whether the detector takes failures that name no account (user ''): about their source, not an account.
    takes_nameless: ClassVar[bool] = False

    def __init__(self, spec: ProfileSpec):
        self.spec = spec
        self.params = spec.parameters
        self.dimension = spec.dimension or self.default_dimension
        self._apps = frozenset(a.lower() for a in spec.applications)
        # Kinds that look at addresses declare TRUSTED_NETWORKS and call this where their README
        # entry says; the others never call it.
        self.from_trusted = SourceTrust(self.params.get("trusted_networks") or ())

    # --- definition -------------------------------------------------------
    @classmethod
    def check_parameters(cls, raw: dict[str, Any] | None) -> dict[str, Any]:
        params = validate(cls.parameters, raw)
        cls.check_combination(params)
        return params

    @classmethod
    def check_combination(cls, params: dict[str, Any]) -> None:
        """Cross-parameter rules; raise ParameterError."""

    @classmethod
    def lookback_seconds(cls, params: dict[str, Any]) -> float:
        """How much recent history a fresh detector must replay to decide like a warm one."""
        return float(params.get("interval_seconds") or 0)

    @classmethod
    def fired_carry_seconds(cls, params: dict[str, Any]) -> float:
        """How long before the replay a fired window that ended there still shapes decisions
        (failed logins: a source's finding closes its long window for a day); 0 for most kinds."""
        return 0.0

    @classmethod
    def history_needs(cls, params: dict[str, Any]) -> HistoryNeeds | None:
        return None

    # --- evaluation -------------------------------------------------------
    def accepts(self, e: EventRecord) -> bool:
        if self.event_types is not None and e.event_type not in self.event_types:
            return False
        if self._apps and (e.application or "").lower() not in self._apps:
            return False
        return True

    def process(self, events: Iterable[EventRecord]) -> list[AnomalyRecord]:
        out: list[AnomalyRecord] = []
        for e in events:
            if self.accepts(e):
                out.extend(self.observe(e))
        return out

    @abstractmethod
    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        """Takes one accepted event; returns the anomalies it completes."""

    def restore_fired(self, group: str, start: float, end: float | None = None) -> None:
        """Marks a burst window this profile fired (read back from its stored anomaly, which ends
        at `end`) before a warm-up replay, so that the replay absorbs that window's events as the
        live detector did and rebuilds the same windows after it, not windows anchored elsewhere."""
        windows = self.fired_windows(group)
        if windows is not None:
            windows.mark_fired(group, start)

    def fired_windows(self, group: str) -> BurstWindows | None:
        """The burst windows whose anomalies name `group` and start where the window starts;
        None for kinds whose anomalies are not burst windows (proximity, rare event)."""
        return None

    def retained(self) -> int:
        """How many entries (window entries, fired windows, trail points, remembered entities)
        the detector holds: bounded by the window and by distinct places and entities, never by
        the number of events. Kinds with other memories add them."""
        return sum(v.retained() for v in vars(self).values() if isinstance(v, BurstWindows))

    def seed_entities(self, rows: Iterable[tuple[str, str, str, datetime, datetime]]) -> None:
        """(user, entity type, entity, first seen, last seen) from history; kinds that remember override."""

    def seed_users(self, rows: Iterable[tuple[str, str | None, datetime]]) -> None:
        """(user, department, first seen) from history."""

    def seed_daily_uploads(self, rows: Iterable[tuple[str, datetime, int]]) -> None:
        """(user, day, uploaded bytes) from history."""

    def seed_failure_spread(self, interval: float, rows: Iterable[tuple[int, int, int]]) -> None:
        """(day index, distinct accounts, source-windows of `interval` seconds) from history."""

    # --- output -----------------------------------------------------------
    def fire(
        self,
        *,
        user: str,
        group: str,
        at: float,
        start: float,
        end: float,
        description: str,
        evidence: dict[str, Any],
        risk_score: int | None = None,
        dimension: str | None = None,
        variant: str = "",
    ) -> AnomalyRecord:
        start_dt = utc(start)
        key = f"{self.spec.id}|{group}|{start_dt.isoformat()}" + (f"|{variant}" if variant else "")
        evidence = {"group": group, **evidence}
        return AnomalyRecord(
            tenant=self.spec.tenant,
            source="rule",
            profile_id=self.spec.id,
            profile_name=self.spec.name,
            profile_kind=self.kind,
            user=user,
            risk_score=risk_score or self.spec.risk_score,
            description=description,
            dimension=dimension or self.dimension,
            time=utc(at),
            window_start=start_dt,
            window_end=utc(end),
            evidence=evidence,
            dedup_key=key,
        )


def human_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds % 86400 == 0 and seconds >= 86400:
        n = seconds // 86400
        return f"{n} day" + ("s" if n != 1 else "")
    if seconds % 3600 == 0 and seconds >= 3600:
        n = seconds // 3600
        return f"{n} hour" + ("s" if n != 1 else "")
    if seconds % 60 == 0 and seconds >= 60:
        n = seconds // 60
        return f"{n} minute" + ("s" if n != 1 else "")
    return f"{seconds} seconds"


def human_bytes(n: float) -> str:
    """Binary units named as such: 6e9 bytes is 5.6 GiB (it read "5.6 GB")."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


__all__ = ["ProfileDetector", "ProfileSpec", "HistoryNeeds", "ParameterError", "DIMENSIONS", "human_duration", "human_bytes"]
