"""Sliding burst windows: N things within T seconds, fired once per burst.

Per group (a user, a source address, ...) the entries of the last few
intervals are kept in time order. When the entries inside some window of
length T that contains the new entry satisfy the profile's predicate, the
window fires: it becomes [first entry, first entry + T), every entry inside it
is consumed, and later entries that fall inside it are absorbed without firing
again. So one burst is one anomaly per group and window, a burst that crosses a
clock boundary still fires, and a late (out-of-order) entry is judged against
the entries around it in event time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from services.profiles.records import EventRecord


@dataclass(slots=True)
class Entry:
    ts: float
    event: EventRecord
    weight: float = 1.0
    key: Any = None
    consumed: bool = False


@dataclass(slots=True)
class Burst:
    group: str
    start: float  # window start: the first entry of the burst
    end: float  # start + interval
    entries: list[Entry]


@dataclass(slots=True)
class _Group:
    times: list[float] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    fired: list[tuple[float, float]] = field(default_factory=list)
    newest: float = float("-inf")


Predicate = Callable[[Sequence[Entry]], bool]


class BurstWindows:
    def __init__(self, interval: float, lateness: float | None = None):
        self.interval = float(interval)
        # How far behind the newest entry a late entry may still be judged.
        self.lateness = self.interval if lateness is None else float(lateness)
        self._groups: dict[str, _Group] = {}
        self._adds = 0
        self._newest = float("-inf")

    def add(self, group: str, entry: Entry, reached: Predicate | None) -> Burst | None:
        """Adds an entry; returns the burst it completes. `reached` None: the caller knows it completes none."""
        g = self._groups.get(group)
        if g is None:
            g = self._groups[group] = _Group()
        self._newest = max(self._newest, entry.ts)
        if entry.ts < g.newest - self.interval - self.lateness:
            return None  # too late to judge against a window we no longer hold
        if self.fired_at(group, entry.ts):
            entry.consumed = True
        i = bisect.bisect_right(g.times, entry.ts)
        g.times.insert(i, entry.ts)
        g.entries.insert(i, entry)
        if entry.ts > g.newest:
            g.newest = entry.ts
        burst = None if entry.consumed or reached is None else self._check(group, g, i, reached)
        self._adds += 1
        if self._adds % 1024 == 0:
            self._sweep()
        else:
            self._prune(g)
        return burst

    def fired_at(self, group: str, ts: float) -> bool:
        g = self._groups.get(group)
        return g is not None and any(start <= ts < end for start, end in g.fired)

    def mark_fired(self, group: str, start: float) -> None:
        """Records a window as fired without entries (e.g. restored from stored anomalies)."""
        g = self._groups.setdefault(group, _Group())
        g.fired.append((start, start + self.interval))
        for e in g.entries:
            if start <= e.ts < start + self.interval:
                e.consumed = True

    def recent(self, group: str, since: float, until: float) -> list[Entry]:
        """Entries of a group with since < ts <= until, consumed or not."""
        g = self._groups.get(group)
        if g is None:
            return []
        lo = bisect.bisect_right(g.times, since)
        hi = bisect.bisect_right(g.times, until)
        return g.entries[lo:hi]

    def _check(self, group: str, g: _Group, i: int, reached: Predicate) -> Burst | None:
        ts = g.times[i]
        # Windows (end - T, end] containing the new entry end at it or at a later entry.
        last = bisect.bisect_left(g.times, ts + self.interval)
        for j in range(i, last):
            end = g.times[j]
            if j > i and end == g.times[j - 1]:
                continue
            lo = bisect.bisect_right(g.times, end - self.interval)
            hi = bisect.bisect_right(g.times, end)
            window = [e for e in g.entries[lo:hi] if not e.consumed]
            if window and reached(window):
                start = window[0].ts
                g.fired.append((start, start + self.interval))
                for e in g.entries[lo:]:
                    if e.ts >= start + self.interval:
                        break
                    e.consumed = True
                return Burst(group, start, start + self.interval, window)
        return None

    def _prune(self, g: _Group) -> None:
        horizon = g.newest - self.interval - self.lateness
        if g.times and g.times[0] < horizon:
            k = bisect.bisect_left(g.times, horizon)
            del g.times[:k]
            del g.entries[:k]
        if g.fired and g.fired[0][1] < horizon:
            g.fired = [w for w in g.fired if w[1] >= horizon]

    def _sweep(self) -> None:
        """Forgets groups that have been quiet for longer than any window can span."""
        horizon = self._newest - 2 * (self.interval + self.lateness)
        for name in [n for n, g in self._groups.items() if g.newest < horizon]:
            del self._groups[name]
        for g in self._groups.values():
            self._prune(g)

    def __len__(self) -> int:
        return len(self._groups)
