"""Parsing on several processes gives what one process gives, in the same order."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.agents.test_ship import RecordingClient
from ueba.cli import ship
from ueba.cli.ship import ship_files
from ueba.parsers import ParseOptions
from ueba.parsers.files import iter_records, parse_records, sources
from ueba.parsers.parallel import parse_in_parallel, read_ahead


def _ecs_lines(n: int) -> list[str]:
    lines = []
    for i in range(n):
        doc = {"@timestamp": f"2026-11-0{1 + i % 9}T10:{i % 60:02d}:00Z", "event": {"action": "user-login",
               "outcome": "failure" if i % 7 == 0 else "success"}, "user": {"name": f"u{i % 37}"},
               "source": {"ip": f"10.1.{i % 200}.{i % 250}"}}
        lines.append(json.dumps(doc))
        if i % 500 == 250:
            lines.append("{not json")
    return lines


@pytest.fixture
def ecs_file(tmp_path):
    path = tmp_path / "ecs.jsonl"
    path.write_text("\n".join(_ecs_lines(5000)) + "\n")
    return path


def _summary(parsed) -> list[tuple]:
    return [(p.record.line_no, p.record.end_offset, p.error, [e.SerializeToString() for e in p.events]) for p in parsed]


def test_parallel_parse_matches_serial_record_for_record(ecs_file):
    [source] = sources(ecs_file)
    serial = _summary(parse_records(iter_records(source, "lines"), "ecs", ParseOptions()))
    parallel = _summary(parse_in_parallel(iter_records(source, "lines"), "ecs", ParseOptions(), workers=2))
    assert parallel == serial
    assert sum(1 for r in serial if r[2]) == 10  # the unparseable lines keep their place and reason


def test_formats_whose_records_depend_on_earlier_ones_are_refused(ecs_file):
    [source] = sources(ecs_file)
    with pytest.raises(ValueError, match="depend on earlier ones"):
        list(parse_in_parallel(iter_records(source, "lines"), "syslog", ParseOptions(), workers=2))


def test_ship_with_workers_sends_what_a_serial_ship_sends(ecs_file, tmp_path, monkeypatch):
    monkeypatch.setattr(ship, "MIN_PARALLEL_BYTES", 0)
    sent = {}
    for workers in (1, 2):
        client = RecordingClient()
        summary = ship_files([ecs_file], client, batch_size=500, state_dir=tmp_path / f"state{workers}", workers=workers)
        assert summary.files[0].unparseable == 10
        sent[workers] = [e.event_id for call in client.calls for e in call]
    assert sent[2] == sent[1] and len(sent[1]) == 5000


def test_reading_ahead_keeps_order_stays_one_item_ahead_and_hands_over_errors():
    pulled: list[int] = []
    closed = threading.Event()

    def numbers(fail_at: int | None = None):
        try:
            for i in range(6):
                if i == fail_at:
                    raise OSError("file went away")
                pulled.append(i)
                yield i
        finally:
            closed.set()

    ahead = read_ahead(numbers())
    assert next(ahead) == 0
    deadline = time.monotonic() + 5
    while len(pulled) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    # One item waits in the slot and the producer holds the next: no further.
    assert pulled == [0, 1, 2]
    assert list(ahead) == [1, 2, 3, 4, 5]

    with pytest.raises(OSError, match="file went away"):
        list(read_ahead(numbers(fail_at=3)))

    closed.clear()
    early = read_ahead(numbers())
    assert next(early) == 0
    early.close()
    assert closed.wait(2), "the producer's source is closed when the consumer stops early"
