"""A small per-process LRU of values read at a data version, for statements that skip their
dearest part while the version they read in the same snapshot equals the cached one (README:
the rollup cache, the capped count cache)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class VersionedCache(Generic[V]):
    """key -> (version, value); least recently used go first; 0 entries turns it off."""

    def __init__(self, entries: int):
        self.entries = entries
        self._items: OrderedDict[Any, tuple[tuple, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[tuple, V] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: Any, version: tuple, value: V) -> None:
        if self.entries <= 0:
            return
        with self._lock:
            self._items[key] = (version, value)
            self._items.move_to_end(key)
            while len(self._items) > self.entries:
                self._items.popitem(last=False)
