"""Stateless ingest replicas: a maximum connection age spreads long streams over them, and nothing is lost or doubled.

Two ingest processes share one port (ingest_pair.py) and close connections
after 2 s. The IngestClient notices the server's GOAWAY, ends its stream at a
batch boundary once everything sent is acknowledged, and goes on over a new
connection, which the kernel may hand to the other process. The command line
(`ueba ship`) does the same through the same client. When the server's grace
is zero the connection is cut with batches in flight: the client resends them
and the store keeps each event once.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Iterator

import psycopg
import pytest

from ueba.cli.main import main
from ueba.client.ingest import IngestClient
from ueba.db import libpq_url
from ueba.launcher import start_service
from ueba.simulator import SimulationConfig, simulate
from ueba.v1 import common_pb2

from .ingest_pair import events_counted, ingest_env, streams_served, two_ingest_processes

pytestmark = pytest.mark.e2e

MAX_AGE = 2
BATCH = 200
PACE_SECONDS = 0.05  # per batch: about 4,000 events/s, so the stream outlives many connection ages


def simulated_events() -> list[common_pb2.Event]:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return list(simulate(SimulationConfig(users=120, days=10, seed=11, start=today - timedelta(days=12))).events())


def stored(database_url: str) -> tuple[int, int]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT (tenant, event_id, time)) FROM events").fetchone()


class UntilBothServed:
    """The simulated events, paced, until both processes have finished a stream (and at least `minimum` are sent)."""

    def __init__(self, events: list[common_pb2.Event], processes, minimum: int):
        self.events = events
        self.processes = processes
        self.minimum = minimum
        self.sent_ids: list[str] = []
        self.both_served = False

    def __iter__(self) -> Iterator[common_pb2.Event]:
        for n, event in enumerate(self.events):
            if n % BATCH == 0:
                time.sleep(PACE_SECONDS)
                if n >= self.minimum and n % (5 * BATCH) == 0:
                    self.both_served = all(streams_served(p) > 0 for p in self.processes)
                    if self.both_served:
                        return
            self.sent_ids.append(event.event_id)
            yield event


def test_streams_rebalance_over_two_processes_without_loss_or_duplicates(fresh_database_url, tmp_path):
    events = simulated_events()
    env = ingest_env(fresh_database_url, MAX_AGE)
    with two_ingest_processes(env, tmp_path) as pair:
        source = UntilBothServed(events, pair, minimum=10_000)
        with IngestClient(pair[0].address, batch_size=BATCH, window=8) as client:
            totals = client.send(source)
        served = [streams_served(p) for p in pair]
        accepted = [events_counted(p, "accepted") for p in pair]
        duplicates = [events_counted(p, "duplicate") for p in pair]

    assert source.both_served, f"{len(events)} events went by and one process never finished a stream: {served}"
    sent = len(source.sent_ids)
    assert totals.sent == sent and totals.rejected == 0
    # Every connection age ended in a graceful hand-over: nothing was cut off, so nothing was resent.
    assert totals.rebalances >= 2
    assert (totals.reconnects, totals.resent_batches, totals.duplicates) == (0, 0, 0)
    assert sum(served) == totals.rebalances + 1
    assert totals.accepted == sum(accepted) == sent and sum(duplicates) == 0
    assert all(a > 0 for a in accepted), accepted
    assert stored(fresh_database_url) == (sent, sent)


def test_cut_connections_are_resent_and_stored_once(fresh_database_url, tmp_path):
    # No grace: the server closes the connection right after its GOAWAY, batches in flight and all.
    env = ingest_env(fresh_database_url, 1, UEBA_DRAIN_SECONDS="0")
    events = simulated_events()[:60_000]
    service = start_service("ingest", env, log_path=tmp_path / "ingest.log")
    try:
        # Unpaced, so that the window is full of unacknowledged batches whenever the connection is cut.
        with IngestClient(service.address, batch_size=BATCH, window=8, initial_backoff=0.05) as client:
            totals = client.send(events)
        accepted, duplicates = events_counted(service, "accepted"), events_counted(service, "duplicate")
    finally:
        service.stop()

    assert totals.reconnects >= 1, "the connection was never cut"
    assert totals.sent == len(events) and totals.rejected == 0 and totals.resent_batches >= 1
    # A batch committed before the cut whose acknowledgement was lost comes back
    # as duplicates on its resend: the client counts it once, as duplicates;
    # the servers counted it as accepted the first time.
    assert totals.accepted + totals.duplicates == len(events)
    assert accepted == len(events) and duplicates == totals.duplicates
    assert stored(fresh_database_url) == (len(events), len(events))


SSHD = "{stamp} bastion sshd[{pid}]: {verb} password for u{user} from 10.{a}.{b}.{c} port {port} ssh2"


def write_auth_log(path, lines: int, start: datetime) -> None:
    with open(path, "w") as f:
        for n in range(lines):
            t = start + timedelta(seconds=n)
            verb = "Failed" if n % 7 else "Accepted"
            f.write(SSHD.format(stamp=t.strftime("%b %d %H:%M:%S"), pid=1000 + n % 30000, verb=verb, user=n % 300,
                                a=n % 250, b=(n // 250) % 250, c=n % 200 + 1, port=20000 + n % 40000) + "\n")


def test_ship_command_line_over_rebalancing_processes_stores_every_line_once(fresh_database_url, tmp_path, capsys, caplog):
    lines = 120_000
    start = (datetime.now(timezone.utc) - timedelta(days=3)).replace(microsecond=0)
    log_file = tmp_path / "auth.log"
    write_auth_log(log_file, lines, start)
    env = ingest_env(fresh_database_url, 1)
    caplog.set_level(logging.INFO, logger="ueba.client.ingest")
    with two_ingest_processes(env, tmp_path) as pair:
        code = main(["ship", str(log_file), "--address", pair[0].address, "--year", str(start.year),
                     "--batch-size", "500", "--state-dir", str(tmp_path / "state"), "--no-progress"])
        accepted = sum(events_counted(p, "accepted") for p in pair)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"sent {lines}, accepted {lines}, duplicates 0, rejected 0" in out
    assert accepted == lines
    assert stored(fresh_database_url) == (lines, lines)
    handed_over = [r for r in caplog.records if r.getMessage().startswith("ingest connection closing")]
    assert handed_over, "no stream outlived a connection age: make the file larger"
    assert not [r for r in caplog.records if r.getMessage().startswith("ingest stream broken")]
