"""End to end: the ingest service as a process, 100,000+ simulated events over gRPC, a crash mid-stream.

The client streams the simulator's events with invalid ones and repeats mixed
in. Part-way through, the service is frozen (SIGSTOP) so that batches are sent
but never acknowledged, then killed (SIGKILL) and started again on the same
port. The client must reconnect, resend what was not acknowledged, and the
database must end up with every valid event exactly once.
"""

from __future__ import annotations

import signal
import threading
from datetime import datetime, timedelta, timezone
from typing import Iterator

import psycopg
import pytest

from ueba.client.ingest import IngestClient
from ueba.db import libpq_url
from ueba.launcher import start_service
from ueba.simulator import SimulationConfig, simulate
from ueba.v1 import common_pb2

pytestmark = pytest.mark.e2e

EVERY = 997  # one event in this many is spoiled
SPOILERS = [
    ("user", lambda e: e.ClearField("user")),
    ("source_ip", lambda e: setattr(e, "source_ip", "10.0.0.256")),
    ("time", lambda e: e.time.FromDatetime(datetime.now(timezone.utc) + timedelta(days=2))),
    ("bytes", lambda e: setattr(e, "bytes", -1)),
    ("type", lambda e: setattr(e, "type", 42)),
    ("user_agent", lambda e: setattr(e, "user_agent", "A" * 5000)),
]


class Stream:
    """The simulator's events with spoiled events, repeats and id-less events mixed in, and a hook."""

    def __init__(self, simulated: list[common_pb2.Event], pause_at: int, on_pause):
        self.simulated = simulated
        self.pause_at = pause_at
        self.on_pause = on_pause
        self.invalid: dict[int, str] = {}  # overall index -> field
        self.valid_ids: set[str] = set()
        self.repeats = 0
        self.idless = 0

    def __iter__(self) -> Iterator[common_pb2.Event]:
        index = 0
        for n, original in enumerate(self.simulated):
            event = common_pb2.Event()
            event.CopyFrom(original)
            if n % EVERY == 500:
                field, spoil = SPOILERS[(n // EVERY) % len(SPOILERS)]
                spoil(event)
                self.invalid[index] = field
            elif n % 1500 == 700:
                event.event_id = ""  # ingest derives a stable id
                self.idless += 1
            else:
                self.valid_ids.add(event.event_id)
            if index == self.pause_at:
                self.on_pause()
            yield event
            index += 1
            if n % 2000 == 1000 and index - 1 not in self.invalid:
                yield event  # the same event again: a duplicate
                self.repeats += 1
                index += 1


def test_stream_survives_a_crash_and_stores_every_valid_event_once(fresh_database_url, tmp_path):
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    sim = simulate(SimulationConfig(users=200, days=10, seed=5, start=today - timedelta(days=12)))
    simulated = list(sim.events())
    assert len(simulated) >= 100_000

    env = {
        "DATABASE_URL": fresh_database_url,
        "UEBA_LISTEN": "127.0.0.1:0",
        "UEBA_METRICS_PORT": "-1",
        "UEBA_MAX_FIELD_LENGTH": "4096",
    }
    log = tmp_path / "ingest.log"
    service = start_service("ingest", env, log_path=log)
    address = service.address
    frozen = threading.Event()

    def freeze():
        # Runs in the client's sending thread: from here on nothing is acknowledged.
        service.process.send_signal(signal.SIGSTOP)
        frozen.set()

    stream = Stream(simulated, pause_at=len(simulated) // 3, on_pause=freeze)
    result: dict = {}

    def send():
        try:
            with IngestClient(address, batch_size=1000, window=6, initial_backoff=0.2, max_backoff=2.0, max_attempts=30) as client:
                result["totals"] = client.send(stream)
        except BaseException as exc:
            result["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    restarted = None
    try:
        assert frozen.wait(120), "the stream never reached the pause point"
        service.kill()  # SIGKILL: whatever was sent but not committed is lost to the server
        restarted = start_service("ingest", {**env, "UEBA_LISTEN": address}, log_path=log)
        sender.join(300)
        assert not sender.is_alive(), "the client did not finish"
    finally:
        service.kill()
        if restarted is not None:
            restarted.stop()
        sender.join(5)
    assert "error" not in result, result.get("error")
    totals = result["totals"]

    total = len(simulated) + stream.repeats
    valid = total - len(stream.invalid)
    unique = valid - stream.repeats
    assert totals.sent == total
    assert totals.reconnects >= 1
    assert totals.resent_batches >= 1
    assert {r.index: r.field for r in totals.rejections} == stream.invalid
    assert totals.rejected == len(stream.invalid)
    # Resent batches that had been committed before the crash come back as duplicates.
    assert totals.accepted + totals.duplicates == valid
    assert totals.duplicates >= stream.repeats

    with psycopg.connect(libpq_url(fresh_database_url)) as conn:
        rows, distinct = conn.execute("SELECT count(*), count(DISTINCT (event_id, time)) FROM events").fetchone()
        ids = {r[0] for r in conn.execute("SELECT event_id FROM events WHERE event_id NOT LIKE 'h%'")}
        derived = conn.execute("SELECT count(*) FROM events WHERE event_id LIKE 'h%'").fetchone()[0]
    assert rows == distinct == unique
    assert ids == stream.valid_ids
    assert derived == stream.idless
    assert totals.accepted <= unique
