"""Records parsed on several processes, in order, with a bounded number of chunks in flight."""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import Callable, Iterator, TypeVar

from ueba.parsers import INDEPENDENT_FORMATS
from ueba.parsers.base import ParseOptions

# Records per task: large enough that pickling and the queue cost little per record.
CHUNK_RECORDS = 2000
# Below this a file parses faster than worker processes start (about 0.3 s each).
MIN_PARALLEL_BYTES = 8 << 20

_parse: Callable | None = None
T = TypeVar("T")


def default_workers() -> int:
    """One CPU is left to the sending process: on two CPUs (ingest and Postgres on the same
    machine) a parse worker beside it measured slower than parsing in line (bench ship)."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def _start_worker(fmt: str, options: ParseOptions) -> None:
    from ueba.parsers.files import parse_records

    global _parse
    _parse = lambda records: list(parse_records(iter(records), fmt, options))  # noqa: E731


def _parse_chunk(records: list) -> list:
    assert _parse is not None
    return _parse(records)


def parse_in_parallel(records: Iterator, fmt: str, options: ParseOptions, workers: int) -> Iterator:
    """ParsedRecords in input order; each worker keeps one parser, as a serial parse would.

    Only formats whose records parse independently qualify (syslog's parser counts repeated
    lines). Spawned workers, not forked ones: the caller may hold a gRPC channel, which must
    not be copied into a child.
    """
    if fmt not in INDEPENDENT_FORMATS:
        raise ValueError(f"{fmt} records depend on earlier ones: parse them in one process")
    context = multiprocessing.get_context("spawn")
    in_flight: deque[Future] = deque()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(fmt, options)) as pool:
        chunks = iter(lambda: list(islice(records, CHUNK_RECORDS)), [])
        for chunk in chunks:
            in_flight.append(pool.submit(_parse_chunk, chunk))
            # Two chunks per worker keep every worker busy while bounding memory.
            if len(in_flight) >= 2 * workers:
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()


def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """`items` produced on a thread, up to `depth` ahead of the consumer.

    The shipper parses the next chunk while the last one is being sent and acknowledged:
    the parse holds the GIL, but gRPC sends and waits for acknowledgements without it, so
    ingest and Postgres work on one chunk while the next parses instead of after it.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(("item", item)):
                    return
            offer(("done", None))
        except BaseException as exc:  # handed to the consumer, which raises it as its own
            offer(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        producer.join(timeout=5)
