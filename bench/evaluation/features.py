"""Per-user-day features of the shipped events, for the generic peer detectors.

What a generic outlier detector would be given by someone who knows the log vocabulary but not
the product: counts, volumes, distinct values and novelty (never seen before by this user, in
event order, so a day is judged only against what came before it). Computed from the events
alone; labels never come near it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Iterable, Iterator

import numpy as np

from ueba.v1 import common_pb2 as pb

FEATURES: tuple[str, ...] = (
    "events", "logons", "failed_logons", "max_failed_logons_in_hour", "source_addresses", "new_source_addresses",
    "countries", "new_countries", "new_source_hosts", "host_accesses", "failed_host_accesses", "destination_hosts",
    "new_destination_hosts", "app_accesses", "new_apps", "downloads", "download_bytes", "uploads", "upload_bytes",
    "deletes", "shares", "privilege_uses", "account_changes", "events_in_new_hours", "max_events_in_hour",
    "new_user_agents",
)
_INDEX = {name: i for i, name in enumerate(FEATURES)}
_COUNTED = {
    pb.EVENT_TYPE_FILE_DOWNLOAD: "downloads", pb.EVENT_TYPE_FILE_UPLOAD: "uploads",
    pb.EVENT_TYPE_FILE_DELETE: "deletes", pb.EVENT_TYPE_FILE_SHARE: "shares",
    pb.EVENT_TYPE_PRIVILEGE_USE: "privilege_uses", pb.EVENT_TYPE_ACCOUNT_CHANGE: "account_changes",
    pb.EVENT_TYPE_APP_ACCESS: "app_accesses", pb.EVENT_TYPE_HOST_ACCESS: "host_accesses",
}
_BYTES = {pb.EVENT_TYPE_FILE_DOWNLOAD: "download_bytes", pb.EVENT_TYPE_FILE_UPLOAD: "upload_bytes"}


@dataclass
class _History:
    """What one user has been seen with so far."""
    addresses: set[str] = field(default_factory=set)
    countries: set[str] = field(default_factory=set)
    source_hosts: set[str] = field(default_factory=set)
    destinations: set[str] = field(default_factory=set)
    apps: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    hours: set[int] = field(default_factory=set)


@dataclass
class _Day:
    vector: np.ndarray
    addresses: set[str] = field(default_factory=set)
    countries: set[str] = field(default_factory=set)
    destinations: set[str] = field(default_factory=set)
    per_hour: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    failed_per_hour: dict[int, int] = field(default_factory=lambda: defaultdict(int))


class DayFeatures:
    """Accumulates features of events seen in time order; `observe` passes the events through."""

    def __init__(self) -> None:
        self._days: dict[tuple[str, date], _Day] = {}
        self._history: dict[str, _History] = defaultdict(_History)
        # A day's novelty is judged against history up to the day before, so hours are added at its end.
        self._pending_hours: dict[str, set[int]] = defaultdict(set)
        self._current: dict[str, date] = {}

    def observe(self, events: Iterable[pb.Event]) -> Iterator[pb.Event]:
        for event in events:
            self.add(event)
            yield event

    def add(self, e: pb.Event) -> None:
        when = datetime.fromtimestamp(e.time.seconds, timezone.utc)
        user, day, hour = e.user, when.date(), when.hour
        history = self._history[user]
        if self._current.get(user) != day:
            history.hours |= self._pending_hours.pop(user, set())
            self._current[user] = day
        d = self._days.get((user, day))
        if d is None:
            d = self._days[(user, day)] = _Day(np.zeros(len(FEATURES)))
        v = d.vector
        v[_INDEX["events"]] += 1
        d.per_hour[hour] += 1
        if hour not in history.hours:
            v[_INDEX["events_in_new_hours"]] += 1
        self._pending_hours[user].add(hour)
        failed = e.outcome == pb.OUTCOME_FAILURE
        if e.type == pb.EVENT_TYPE_LOGON:
            if failed:
                v[_INDEX["failed_logons"]] += 1
                d.failed_per_hour[hour] += 1
            else:
                v[_INDEX["logons"]] += 1
        counted = _COUNTED.get(e.type)
        if counted:
            v[_INDEX[counted]] += 1
        if e.type in _BYTES:
            v[_INDEX[_BYTES[e.type]]] += e.bytes
        if e.type == pb.EVENT_TYPE_HOST_ACCESS and failed:
            v[_INDEX["failed_host_accesses"]] += 1
        self._novelty(e, d, history)

    def _novelty(self, e: pb.Event, d: _Day, history: _History) -> None:
        v = d.vector
        for value, day_set, seen, total, new in (
            (e.source_ip, d.addresses, history.addresses, "source_addresses", "new_source_addresses"),
            (e.geo.country_code, d.countries, history.countries, "countries", "new_countries"),
            (e.destination_host.lower(), d.destinations, history.destinations, "destination_hosts",
             "new_destination_hosts"),
        ):
            if not value:
                continue
            if value not in day_set:
                day_set.add(value)
                v[_INDEX[total]] += 1
            if value not in seen:
                seen.add(value)
                v[_INDEX[new]] += 1
        for value, seen, new in ((e.source_host.lower(), history.source_hosts, "new_source_hosts"),
                                 (e.user_agent, history.agents, "new_user_agents")):
            if value and value not in seen:
                seen.add(value)
                v[_INDEX[new]] += 1
        if e.type == pb.EVENT_TYPE_APP_ACCESS and e.application and e.application not in history.apps:
            history.apps.add(e.application)
            v[_INDEX["new_apps"]] += 1

    def matrix(self, keys: list[tuple[str, date]]) -> np.ndarray:
        """One row per key, in the order given; a key without events is a row of zeros."""
        rows = np.zeros((len(keys), len(FEATURES)))
        for i, key in enumerate(keys):
            d = self._days.get(key)
            if d is not None:
                rows[i] = d.vector
                rows[i, _INDEX["max_events_in_hour"]] = max(d.per_hour.values())
                rows[i, _INDEX["max_failed_logons_in_hour"]] = max(d.failed_per_hour.values(), default=0)
        return rows

    def keys(self) -> list[tuple[str, date]]:
        return sorted(self._days)
