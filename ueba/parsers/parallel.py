"""Records parsed on several processes, in order, with a bounded number of chunks in flight."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import Callable, Iterator

from ueba.parsers import INDEPENDENT_FORMATS
from ueba.parsers.base import ParseOptions

# Records per task: large enough that pickling and the queue cost little per record.
CHUNK_RECORDS = 2000
# Below this a file parses faster than worker processes start (about 0.3 s each).
MIN_PARALLEL_BYTES = 8 << 20

_parse: Callable | None = None


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
