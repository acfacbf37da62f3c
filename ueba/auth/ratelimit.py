"""Per-token request rate: a token bucket for each caller, in this process."""

from __future__ import annotations

import threading
import time
from typing import Callable


class TokenBucket:
    """`rate` tokens a second, holding at most `burst`; take() spends one when there is one."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    """A bucket per key (the token id); rate 0 allows everything."""

    MAX_KEYS = 100_000  # a full bucket is the same as no bucket, so forgetting them is safe

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, key: str) -> bool:
        if not self.enabled:
            return True
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.MAX_KEYS:
                    self._buckets.clear()
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            return bucket.take(now)
