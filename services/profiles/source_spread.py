"""How many accounts one source fails on per window in a tenant: the population a password spray
is judged against (README: "Password spray is relative to the organisation")."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from ueba.risk import rarity_decades

DAY = 86400
# Below this many source-windows a high quantile is the largest few values of a small sample
# (one earlier spray would set it): the floor alone decides.
MIN_WINDOWS = 500
SWEEP_EVERY = 1024


@dataclass(frozen=True)
class SpreadRarity:
    """A run of failures' rarity among the tenant's source-windows: counted (how many were as
    wide, of all) and fitted (a geometric tail), `decades` the stronger of the two."""

    as_wide: int
    windows: int
    per_account: float  # decades of tail each further account adds
    decades: float

    def evidence(self) -> dict:
        return {"source_windows": self.as_wide, "of": self.windows, "per_account_decades": self.per_account,
                "decades": self.decades}


class SourceSpread:
    """Distinct accounts failing per source and fixed window, as a histogram per day.

    Fixed windows (`ts // interval`) rather than the detector's sliding ones: the store's
    aggregate that seeds a fresh detector can count them alike, and a run split by a window
    boundary only lowers the figure, which makes the threshold stricter, not looser.
    """

    def __init__(self, interval: float, quantile: float, floor: int, days: int):
        self.interval = interval
        self.quantile = quantile
        self.floor = floor
        self.days = days
        self._open: dict[str, tuple[int, set[str]]] = {}  # source -> (window index, accounts)
        self._days: dict[int, Counter] = {}  # day index -> {accounts: source-windows}
        self._newest_window = -math.inf
        self._threshold: int | None = None
        self._adds = 0

    def add(self, source: str, account: str, ts: float) -> None:
        window = int(ts // self.interval)
        current = self._open.get(source)
        if current is None or window > current[0]:
            if current is not None:
                self._close(current)
            current = self._open[source] = (window, set())
        if window == current[0]:
            current[1].add(account)  # an account late by a window or more is left out
        if window > self._newest_window:
            self._newest_window = window
        self._adds += 1
        if self._adds % SWEEP_EVERY == 0:
            self._close_quiet()

    def seed(self, rows: Iterable[tuple[int, int, int]]) -> None:
        """(day index, accounts, source-windows) from the store's history."""
        for day, accounts, windows in rows:
            self._days.setdefault(int(day), Counter())[int(accounts)] += int(windows)
        self._threshold = None

    def threshold(self) -> int:
        """Distinct accounts from one source within a window that make a spray: above what all but
        the top (1 - quantile) of the tenant's source-windows reached, and at least the floor."""
        if self._threshold is None:
            self._threshold = max(self.floor, self._usual() + 1)
        return self._threshold

    def rarity(self, accounts: int) -> "SpreadRarity":
        """How rare a run of failures over `accounts` accounts (or hosts) from one source is here."""
        histogram = self._histogram()
        total = sum(histogram.values())
        as_wide = sum(windows for n, windows in histogram.items() if n >= accounts)
        # Each account past the first multiplies the tail by the share of the tenant's usual
        # windows (below the spray threshold: earlier sprays teach nothing) that went on to a
        # second account; add-one smoothing keeps a new tenant's guess at one in two.
        usual = {n: w for n, w in histogram.items() if n < self.threshold()}
        wider = sum(w for n, w in usual.items() if n >= 2)
        step = -math.log10((wider + 1) / (sum(usual.values()) + 2))
        fitted = step * max(accounts - 1, 0)
        counted = rarity_decades(as_wide, total) if total >= MIN_WINDOWS else 0.0
        return SpreadRarity(as_wide, total, round(step, 3), round(max(fitted, counted), 3))

    def windows(self) -> int:
        return sum(sum(c.values()) for c in self._days.values())

    def retained(self) -> int:
        return sum(len(a) for _, a in self._open.values()) + sum(len(c) for c in self._days.values())

    def _usual(self) -> int:
        """The quantile of accounts per source-window, or 0 without enough history."""
        total = self._histogram()
        n = sum(total.values())
        if not self.quantile or n < MIN_WINDOWS:
            return 0
        rank, seen = self.quantile * n, 0
        for accounts in sorted(total):
            seen += total[accounts]
            if seen >= rank:
                return accounts
        return max(total)

    def _histogram(self) -> Counter:
        """{accounts: source-windows} over the days kept."""
        total = Counter()
        for c in self._days.values():
            total.update(c)
        return total

    def _close(self, window: tuple[int, set[str]]) -> None:
        index, accounts = window
        if not accounts:
            return
        day = int(index * self.interval // DAY)
        self._days.setdefault(day, Counter())[len(accounts)] += 1
        oldest = day - self.days
        for d in [d for d in self._days if d < oldest]:
            del self._days[d]
        self._threshold = None

    def _close_quiet(self) -> None:
        """Closes the windows no later event can reach: memory follows the active sources."""
        for source in [s for s, (w, _) in self._open.items() if w < self._newest_window - 1]:
            self._close(self._open.pop(source))
