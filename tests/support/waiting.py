"""Waiting for something that happens in another thread or process, with a bound."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def eventually(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, message: str = "") -> T:
    """The first truthy value `condition()` returns within `timeout` seconds; fails the test otherwise.

    An exception from `condition` propagates at once: it is a failure, not a "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout:g} s (last value {value!r})")
        time.sleep(interval)


def settled(read: Callable[[], object], quiet: float, timeout: float, interval: float = 0.2) -> object:
    """The value `read()` returns once it has stayed the same for `quiet` seconds, within `timeout`."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() >= deadline:
            raise AssertionError(f"value still changing after {timeout:g} s (last {last!r})")
        time.sleep(interval)
        value = read()
        if value != last:
            last, since = value, time.monotonic()
    return last
