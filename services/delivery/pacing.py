"""When to try a failed delivery again: exponential back-off with jitter."""

from __future__ import annotations

import random


def retry_delay(attempt: int, base: float, cap: float, retry_after: float = 0.0,
                rng: random.Random | None = None) -> float:
    """Seconds before attempt `attempt + 1`: base * 2^(attempt-1), capped, half of it random.

    The random half spreads the retries of many deliveries that failed together (a receiver
    coming back after an outage) instead of sending them all at the same instant; a receiver's
    Retry-After is a floor.
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    jittered = ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
    return max(jittered, retry_after)
