"""Sliding burst windows per group in event time: N things within T seconds, fired once per burst
(README: "One burst, one anomaly", "Memory follows moves and windows")."""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

# Far above every count threshold the built-in profiles use; a safety bound, not a tuning knob.
MAX_ENTRIES = 2048
# Groups one window set holds at most (the least recently fed go first); a safety bound far
# above the users and addresses of a tenant's live hour.
MAX_GROUPS = 200_000
# A group fed no entry for this long in wall-clock time (and at least its window and lateness)
# is forgotten: memory is bounded by idleness, never by other groups' event times.
MIN_IDLE_SECONDS = 600.0
SWEEP_EVERY = 1024


@dataclass(slots=True)
class Entry:
    ts: float
    item: Any = None  # what the detector keeps of the event for its evidence
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
    newest: float = float("-inf")  # the group's own newest event time: its windows' clock
    fed: float = 0.0  # wall-clock time (at sweep resolution) it was last fed


Predicate = Callable[[Sequence[Entry]], bool]


def at_once(window: Sequence[Entry]) -> bool:
    """The predicate of one-event bursts: every entry fires, unless absorbed."""
    return True


class BurstWindows:
    def __init__(
        self,
        interval: float,
        lateness: float | None = None,
        *,
        keep_consumed: bool = False,
        max_entries: int = MAX_ENTRIES,
        max_groups: int = MAX_GROUPS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.interval = float(interval)
        # How far behind the newest entry a late entry may still be judged.
        self.lateness = self.interval if lateness is None else float(lateness)
        self.keep_consumed = keep_consumed
        self.max_entries = max_entries
        self.max_groups = max_groups
        self.idle_seconds = max(MIN_IDLE_SECONDS, 2 * (self.interval + self.lateness))
        self._clock = clock
        self._now = clock()
        self._groups: dict[str, _Group] = {}
        self._adds = 0

    def add(self, group: str, entry: Entry, reached: Predicate | None) -> Burst | None:
        """Adds an entry; returns the burst it completes. `reached` None: the caller knows it completes none."""
        g = self._groups.get(group)
        if g is None:
            g = self._groups[group] = _Group()
        g.fed = self._now
        ts = entry.ts
        if ts < g.newest - self.interval - self.lateness:
            return None  # too late to judge against a window we no longer hold
        if ts > g.newest:
            g.newest = ts
        if g.fired and self._fired_in(g, ts):
            entry.consumed = True
            if not self.keep_consumed:
                self._tick(g)
                return None  # absorbed: it can take part in no later window
        if not g.times or ts >= g.times[-1]:  # the common case: in time order
            i = len(g.times)
            g.times.append(ts)
            g.entries.append(entry)
        else:
            i = bisect.bisect_right(g.times, ts)
            g.times.insert(i, ts)
            g.entries.insert(i, entry)
        burst = None if entry.consumed or reached is None else self._check(group, g, i, reached)
        if len(g.entries) > self.max_entries:
            self._shed(g)
        self._tick(g)
        return burst

    def extend(self, group: str, ts: float, key: Any) -> Entry | None:
        """Moves the group's newest entry forward to `ts` when the new event repeats it (the
        same `key`: same place, same address) and comes after it; returns the entry, whose
        item the caller refreshes, or None (then the caller adds the event as usual).

        The windows ending at the repeat hold no entry the windows ending at the one it
        replaces did not, so it completes no burst the other did not.
        """
        g = self._groups.get(group)
        if g is None or not g.entries:
            return None
        last = g.entries[-1]
        if last.key != key or ts < last.ts or last.consumed or (g.fired and self._fired_in(g, ts)):
            return None
        last.ts = g.times[-1] = ts
        if ts > g.newest:
            g.newest = ts
        g.fed = self._now
        self._adds += 1  # the group does not grow: only the periodic sweep is due
        if self._adds % SWEEP_EVERY == 0:
            self._sweep()
        return last

    def fired_at(self, group: str, ts: float) -> bool:
        g = self._groups.get(group)
        return g is not None and self._fired_in(g, ts)

    @staticmethod
    def _fired_in(g: _Group, ts: float) -> bool:
        for start, end in g.fired:
            if start <= ts < end:
                return True
        return False

    def mark_fired(self, group: str, start: float) -> None:
        """Records a window as fired without its entries (restored from a stored anomaly): later
        entries inside it are absorbed, as they were by the detector that fired it."""
        g = self._groups.get(group)
        if g is None:
            g = self._groups[group] = _Group()
        g.fed = self._now
        if (start, start + self.interval) in g.fired:
            return
        g.fired.append((start, start + self.interval))
        for e in g.entries:
            if start <= e.ts < start + self.interval:
                e.consumed = True
        if not self.keep_consumed:
            self._drop_consumed(g)

    def recent(self, group: str, since: float, until: float) -> list[Entry]:
        """Entries of a group with since < ts <= until, consumed or not (with keep_consumed)."""
        g = self._groups.get(group)
        if g is None:
            return []
        lo = bisect.bisect_right(g.times, since)
        hi = bisect.bisect_right(g.times, until)
        return g.entries[lo:hi]

    def retained(self) -> int:
        """Entries and fired windows held over every group: what memory grows with."""
        return sum(len(g.entries) + len(g.fired) for g in self._groups.values())

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
                if not self.keep_consumed:
                    self._drop_consumed(g)
                return Burst(group, start, start + self.interval, window)
        return None

    @staticmethod
    def _drop_consumed(g: _Group) -> None:
        kept = [e for e in g.entries if not e.consumed]
        if len(kept) != len(g.entries):
            g.entries = kept
            g.times = [e.ts for e in kept]

    def _shed(self, g: _Group) -> None:
        """Brings a group back under max_entries (to three quarters, so that it happens rarely)."""
        target = self.max_entries * 3 // 4
        excess = len(g.entries) - target
        kept = []
        for e in g.entries:
            if excess > 0 and e.consumed:
                excess -= 1
                continue
            kept.append(e)
        if excess > 0:
            kept = kept[excess:]
        g.entries = kept
        g.times = [e.ts for e in kept]

    def _tick(self, g: _Group) -> None:
        self._adds += 1
        if self._adds % SWEEP_EVERY == 0:
            self._sweep()
        else:
            self._prune(g)

    def _prune(self, g: _Group) -> None:
        horizon = g.newest - self.interval - self.lateness
        if g.times and g.times[0] < horizon:
            k = bisect.bisect_left(g.times, horizon)
            del g.times[:k]
            del g.entries[:k]
        if g.fired and g.fired[0][1] < horizon:
            g.fired = [w for w in g.fired if w[1] >= horizon]

    def _sweep(self) -> None:
        """Prunes every group by its own newest time; forgets the groups fed nothing for
        `idle_seconds` of wall-clock time, and the least recently fed beyond `max_groups`.

        Never by the newest time of other groups: a group three hours behind the rest (a
        backfill beside live traffic) keeps its windows as long as it is being fed.
        """
        self._now = now = self._clock()
        idle = now - self.idle_seconds
        for name in [n for n, g in self._groups.items() if g.fed < idle]:
            del self._groups[name]
        if len(self._groups) > self.max_groups:
            by_feeding = sorted(self._groups, key=lambda n: self._groups[n].fed)
            for name in by_feeding[: len(self._groups) - self.max_groups * 3 // 4]:
                del self._groups[name]
        for g in self._groups.values():
            self._prune(g)

    def __len__(self) -> int:
        return len(self._groups)
