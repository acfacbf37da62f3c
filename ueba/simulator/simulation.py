"""SimulationConfig, simulate() and the time-ordered event stream."""

from __future__ import annotations

import bisect
import gc
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from operator import itemgetter
from typing import Iterator, Mapping

from ueba.simulator.activity import ActivityWriter
from ueba.simulator.context import HOUR, ContextBook
from ueba.simulator.labels import LABEL_KINDS, Label
from ueba.simulator.org import Organisation, SimUser, build_organisation
from ueba.simulator.records import Record, to_event
from ueba.simulator.planner import plan_scenarios
from ueba.simulator.scenarios import EPOCH, Injected
from ueba.simulator.world import DEPARTMENTS, Department
from ueba.v1.common_pb2 import Event

# No time zone is ahead of UTC by more than this: events of local day d are never earlier than
# UTC midnight of d minus this, which is what lets the stream be sorted one day at a time.
MAX_UTC_LEAD_US = 14 * HOUR
DAY_US = 24 * HOUR


@dataclass(frozen=True)
class SimulationConfig:
    users: int = 200
    days: int = 30
    seed: int = 7
    start: datetime = datetime(2026, 10, 1, tzinfo=timezone.utc)
    scenarios: bool = True
    # How many of each scenario kind; None: about one per 100 user-months, at least one.
    scenarios_per_kind: int | None = None
    # Per-kind overrides, e.g. {"brute_force": 5, "mass_deletion": 0}.
    scenario_counts: Mapping[str, int] = field(default_factory=dict)
    first_scenario_day: int = 7  # scenarios start after the baseline week
    traveller_share: float = 0.08
    remote_share: float = 0.25
    typo_rate: float = 0.03      # share of logons preceded by 1-3 mistyped passwords
    departments: tuple[Department, ...] = DEPARTMENTS

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError("users must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=timezone.utc))
        unknown = set(self.scenario_counts) - set(LABEL_KINDS)
        if unknown:
            raise ValueError(f"scenario_counts: unknown kinds {sorted(unknown)}; known: {list(LABEL_KINDS)}")
        if any(v < 0 for v in self.scenario_counts.values()) or (self.scenarios_per_kind or 0) < 0:
            raise ValueError("scenario counts must not be negative")
        for name in ("traveller_share", "remote_share", "typo_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if not self.departments:
            raise ValueError("departments must not be empty")

    def counts(self) -> dict[str, int]:
        if not self.scenarios:
            return {}
        default = self.scenarios_per_kind
        if default is None:
            default = max(1, round(self.users * self.days / 3000))
        return {kind: int(self.scenario_counts.get(kind, default)) for kind in LABEL_KINDS}

    def fingerprint(self) -> str:
        """Short digest of everything that shapes the events but the start; part of every event id.
        The start is left out so that the ids of a stored simulation tell its start (see
        start_date), whatever day a later run would have chosen."""
        text = repr((self.users, self.days, self.seed, sorted(self.counts().items()), self.first_scenario_day,
                     self.traveller_share, self.remote_share, self.typo_rate, self.departments))
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def day_opening_ids(self) -> list[str]:
        """The id of the first event of each UTC day a simulation of this shape can cover,
        whatever its start: one of them is stored with every loaded simulation."""
        prefix = _id_prefix(self)
        return [_event_id(prefix, day, 0) for day in range(self.days + 1)]


def _id_prefix(config: SimulationConfig) -> str:
    return f"sim-{config.fingerprint()}-"


_SIMULATED_ID = re.compile(r"^sim-[0-9a-f]{8}-(\d+)-\d+$")


def _event_id(prefix: str, day: int, n: int) -> str:
    return f"{prefix}{day:03d}-{n:06d}"


def start_date(event_id: str, time: datetime) -> date:
    """The UTC date on which the simulation that made this event started: ids count UTC days
    from it, so any stored event gives it."""
    m = _SIMULATED_ID.match(event_id)
    if m is None:
        raise ValueError(f"{event_id!r} is not a simulated event id")
    return time.astimezone(timezone.utc).date() - timedelta(days=int(m.group(1)))


class Simulation:
    """One simulated organisation and period. events() regenerates the same stream each call."""

    def __init__(self, config: SimulationConfig):
        self.config = config
        start = config.start.astimezone(timezone.utc)
        self._start_us = (start - EPOCH) // timedelta(microseconds=1)
        self._end_us = self._start_us + config.days * 86_400 * 1_000_000
        self._org: Organisation = build_organisation(config.seed, config.users, config.days, config.departments,
                                                     config.traveller_share, config.remote_share)
        self._book = ContextBook(self._org, config.seed, start.date())
        self._injected: Injected = plan_scenarios(
            self._org, self._book, config.seed, config.counts(), config.first_scenario_day, config.days,
            (self._start_us + min(config.first_scenario_day, config.days - 1) * 86_400_000_000, self._end_us))
        self.labels: list[Label] = list(self._injected.labels)
        self.users: list[SimUser] = list(self._org.users)
        self._id_prefix = _id_prefix(config)

    @property
    def start(self) -> datetime:
        return self.config.start

    @property
    def end(self) -> datetime:
        return self.config.start + timedelta(days=self.config.days)

    def departures(self) -> dict[str, datetime]:
        """Users who leave during the period (a few days after a bulk download), with the UTC
        midnight of their first day without activity (local days: allow up to a day either side)."""
        return {self._org.users[u].name: datetime.combine(self._book.date_of(p.departure_day), datetime.min.time(),
                                                          tzinfo=timezone.utc)
                for u, p in enumerate(self._org.plans) if p.departure_day is not None}

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def records(self) -> Iterator[Record]:
        """The raw records in time order, before conversion to Event."""
        for batch in self._batches():
            yield from batch

    def _batches(self) -> Iterator[list[Record]]:
        """Records in time order, a local day's worth at a time."""
        cfg = self.config
        writer = ActivityWriter(self._org, self._book, cfg.seed, cfg.typo_rate,
                                {d.name: d.file_intensity for d in cfg.departments})
        injected = self._injected.records
        next_injected = 0
        pending: list[Record] = []
        key = itemgetter(0)
        start_us, end_us = self._start_us, self._end_us
        n_users = len(self._org.users)
        # Local days from the one before the start to the one after the end: users east and west
        # of UTC have parts of those days inside the UTC window.
        window = (start_us, end_us)
        for day in range(-1, cfg.days + 1):
            # The records are all-atomic tuples the collector would only scan and untrack; pausing
            # it while a day is generated saves a good share of the time.
            collecting = gc.isenabled()
            gc.disable()
            try:
                for u in range(n_users):
                    writer.day(u, day, pending, window)
            finally:
                if collecting:
                    gc.enable()
            if day == cfg.days:
                watermark = end_us
            else:
                watermark = min(self._book.midnight_utc(day + 1) - MAX_UTC_LEAD_US, end_us)
            while next_injected < len(injected) and injected[next_injected][0] < watermark:
                pending.append(injected[next_injected])
                next_injected += 1
            pending.sort(key=key)
            cut = bisect.bisect_left(pending, watermark, key=key)
            ready, pending = pending[:cut], pending[cut:]
            lo = bisect.bisect_left(ready, start_us, key=key)
            yield ready[lo:] if lo else ready
            if watermark >= end_us:
                break

    def events(self) -> Iterator[Event]:
        users = self._org.users
        names = [u.name for u in users]
        departments = [u.department for u in users]
        prefix = self._id_prefix
        # Ids count UTC calendar days from the start's and events within each day.
        first_day = self._start_us // DAY_US
        day, n, next_day_us = 0, 0, (first_day + 1) * DAY_US
        for batch in self._batches():
            for r in batch:
                if r[0] >= next_day_us:
                    day, n = r[0] // DAY_US - first_day, 0
                    next_day_us = (first_day + day + 1) * DAY_US
                u = r[1]
                yield to_event(r, _event_id(prefix, day, n), names[u], departments[u])
                n += 1


def simulate(config: SimulationConfig | None = None) -> Simulation:
    return Simulation(config or SimulationConfig())
