"""Profiles evaluator throughput against ingest, and the delay from commit to anomaly.

The ingest and profiles services run as processes (as in containers) against a
fresh database, every built-in profile enabled. A simulated organisation (with
its labelled attacks) is streamed through ingest; meanwhile the evaluator tails
the commits. Figures:

- ingest rate: events / time until the last batch is acknowledged (committed);
- evaluator rate while streaming: events / time until it has taken every event;
- evaluator capacity: a second evaluator process, started with no cursor on the
  full table, takes the whole backlog; events / time from READY to caught up;
- peak RSS of the profiles process (VmHWM) in each run, and the load average at the end;
- commit-to-anomaly delay of the live run: anomaly created_at minus ingested_at
  of its triggering event (the event at the anomaly's time for its user), p50/p95/max;
- CPU time per event of the client, ingest, profiles and Postgres during the live run, and so
  the cores the path needs at the ingest rate (whether the evaluator can keep up at all);
- the same live run paced at half the slower of the full-speed ingest rate and the evaluator's
  backlog rate (`paced`): the delay where the machine has room for the evaluator.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from bench import DATA, backend_pids, cpu_seconds
from ueba.store.databases import postgres_server, scratch_database
from ueba.db import libpq_url

USERS = int(os.environ.get("BENCH_PROFILES_USERS", "200"))
DAYS = int(os.environ.get("BENCH_PROFILES_DAYS", "14"))
BATCH_SIZE = int(os.environ.get("BENCH_PROFILES_BATCH", "1000"))
# A second live run paced at this share of the slower of the full-speed ingest rate and the
# evaluator's backlog rate (0: none).
PACED_SHARE = float(os.environ.get("BENCH_PROFILES_PACED_SHARE", "0.5"))
TARGETS = {"evaluator_keeps_up_ratio_min": 1.0, "delay_p95_seconds_max": 0.5}  # as bench/summary.py

# Whether any event is not yet visible in the evaluator's cursor (at or after its xmax, or one of
# the transactions it saw running), as two index probes: a count over the whole table every 50 ms
# took a good part of a core from the evaluator and Postgres it measures.
BEHIND = """WITH c AS (SELECT snapshot::pg_snapshot AS s FROM profile_cursors WHERE consumer = 'evaluator')
    SELECT EXISTS (SELECT 1 FROM events WHERE txid >= pg_snapshot_xmax((SELECT s FROM c)))
        OR EXISTS (SELECT 1 FROM events WHERE txid = ANY(ARRAY(SELECT pg_snapshot_xip((SELECT s FROM c)))))"""
DELAYS = """SELECT EXTRACT(EPOCH FROM a.created_at - max(e.ingested_at))
    FROM anomalies a JOIN events e
      ON e.tenant = a.tenant AND e.user_name = a.user_name AND e.time = a.time
    GROUP BY a.id, a.created_at"""


def _events(users: int, days: int):
    from ueba.simulator import SimulationConfig, simulate

    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    sim = simulate(SimulationConfig(users=users, days=days, seed=5, start=today - timedelta(days=days + 1)))
    return list(sim.events()), len(sim.labels)


def _wait_caught_up(url: str, timeout: float = 900.0) -> float:
    """Waits until the evaluator's cursor covers every event; returns when (perf_counter)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM profile_cursors WHERE consumer = 'evaluator'").fetchone()
            if row[0] and not conn.execute(BEHIND).fetchone()[0]:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError("evaluator did not catch up")
            time.sleep(0.05)


def _peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident set (VmHWM), read before it is stopped."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _paced(events: list, rate: float):
    """The events at `rate` a second (checked every 100 events), as an agent tailing logs sends them."""
    started = time.perf_counter()
    for i, event in enumerate(events):
        if i % 100 == 0:
            ahead = started + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        yield event


def _live(url: str, env: dict, events: list, logs: Path, rate: float | None, tag: str) -> dict:
    """Streams the events through ingest (at full speed, or paced at `rate`) while the evaluator
    tails them; the rates, the commit -> anomaly delays and the CPU time of every process."""
    from ueba.client.ingest import IngestClient
    from ueba.launcher import start_service

    ingest = start_service("ingest", env, log_path=logs / f"ingest-{tag}.log")
    profiles = start_service("profiles", {**env, "UEBA_PROFILES_POLL_SECONDS": "0.5"}, log_path=logs / f"profiles-{tag}.log")
    try:
        with psycopg.connect(libpq_url(url)) as conn:
            enabled = conn.execute("SELECT count(*), count(DISTINCT kind) FROM profiles WHERE enabled").fetchone()
        pids = {"client": os.getpid(), "ingest": ingest.process.pid, "profiles": profiles.process.pid}
        cpu_start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        pg_start = sum(cpu_seconds(pid) for pid in backend_pids(url))
        with IngestClient(ingest.address, batch_size=BATCH_SIZE) as client:
            started = time.perf_counter()
            totals = client.send(_paced(events, rate) if rate else events)
            ingest_done = time.perf_counter()
        caught_up = _wait_caught_up(url)
        cpu = {name: cpu_seconds(pid) - cpu_start[name] for name, pid in pids.items()}
        # Backends that ended during the run are missed, those open before it counted from their start.
        cpu["postgres"] = sum(cpu_seconds(pid) for pid in backend_pids(url)) - pg_start
        rss = _peak_rss_mib(profiles.process.pid)
    finally:
        profiles.stop()
        ingest.stop()
    with psycopg.connect(libpq_url(url)) as conn:
        delays = [float(r[0]) for r in conn.execute(DELAYS)]
        anomalies = conn.execute("SELECT count(*) FROM anomalies").fetchone()[0]
    n = totals.accepted
    stream_seconds = caught_up - started
    cpu_us = {name: round(seconds / n * 1e6, 1) for name, seconds in cpu.items()}
    ingest_rate = n / (ingest_done - started)
    return {
        "events": n,
        "profiles_enabled": enabled[0], "profile_kinds_enabled": enabled[1],
        "ingest_events_per_second": round(ingest_rate),
        "evaluator_events_per_second_while_streaming": round(n / stream_seconds),
        "evaluator_lag_after_last_commit_seconds": round(caught_up - ingest_done, 2),
        # CPU time of each process over the stream and the catch-up, per event; times the ingest
        # rate it is the cores the whole path needs to keep up (the machine has os.cpu_count()).
        "cpu_us_per_event": cpu_us,
        "cores_needed_at_ingest_rate": round(sum(cpu.values()) / n * ingest_rate, 2),
        "cores_used_while_streaming": round(sum(cpu.values()) / stream_seconds, 2),
        "profiles_peak_rss_mib": rss,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "anomalies": anomalies,
        "delay_seconds_p50": round(statistics.median(delays), 3) if delays else None,
        "delay_seconds_p95": round(_percentile(delays, 0.95), 3) if delays else None,
        "delay_seconds_max": round(max(delays), 3) if delays else None,
        "delays_measured": len(delays),
    }


def _backlog(url: str, env: dict, logs: Path) -> tuple[float, float | None]:
    """A fresh evaluator over every stored event (no cursor): seconds from READY to caught up, peak RSS."""
    from ueba.launcher import start_service

    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("DELETE FROM profile_cursors")
        conn.commit()
    profiles = start_service("profiles", {**env, "UEBA_PROFILES_POLL_SECONDS": "0.5"}, log_path=logs / "profiles-backlog.log")
    started = time.perf_counter()  # from READY: process start-up is not evaluator work
    try:
        done = _wait_caught_up(url)
        rss = _peak_rss_mib(profiles.process.pid)
    finally:
        profiles.stop()
    return done - started, rss


def run(out_dir: Path) -> dict:
    from ueba.store.migrate import upgrade

    logs = out_dir / "profiles-bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    events, labels = _events(USERS, DAYS)
    with postgres_server(DATA / "bench") as server_url:
        with scratch_database(server_url, "ueba_bench_profiles") as url:
            env = {"DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
                   "UEBA_LOG_LEVEL": "WARNING", "UEBA_RETENTION_DAYS": "0"}  # fmt: skip
            upgrade(url)
            live = _live(url, env, events, logs, None, "full")
            capacity_seconds, backlog_rss = _backlog(url, env, logs)
        paced = None
        if PACED_SHARE:
            # The same stream at a share of what both ingest and a lone evaluator can take (the
            # slower of the two: on a busy machine the evaluator's backlog rate), in a database of its own.
            with scratch_database(server_url, "ueba_bench_profiles") as url:
                upgrade(url)
                rate = min(live["ingest_events_per_second"], live["events"] / capacity_seconds) * PACED_SHARE
                paced = _live(url, {**env, "DATABASE_URL": url}, events, logs, rate, "paced")
                paced["paced_share_of_the_slower_rate"] = PACED_SHARE
                paced["paced_rate_events_per_second"] = round(rate)
    capacity = live["events"] / capacity_seconds
    ingest_rate = live["ingest_events_per_second"]
    result = {
        "users": USERS, "days": DAYS, "labelled_attacks": labels, **live,
        "evaluator_capacity_events_per_second": round(capacity),
        "evaluator_capacity_seconds": round(capacity_seconds, 1),
        "profiles_peak_rss_mib_backlog": backlog_rss,
        "paced": paced,
        "targets": TARGETS,
    }  # fmt: skip
    result["targets_met"] = bool(
        live["delays_measured"] and capacity / ingest_rate >= TARGETS["evaluator_keeps_up_ratio_min"]
        and live["delay_seconds_p95"] < TARGETS["delay_p95_seconds_max"]
    )
    return result
