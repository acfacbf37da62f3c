"""Ingest throughput end to end against raw COPY, and the ingest process's peak memory.

End to end: the ingest service runs as a process (as in a container) against a
fresh database; an IngestClient streams pre-built events over gRPC; the clock
stops when the last batch is acknowledged, i.e. committed. Raw COPY: the same
rows, already converted, COPY'd with psycopg into `events` in batches of the
same size, one commit each, after a TRUNCATE; once before the end-to-end run and
once after it, the mean of the two being the baseline. Their ratio is the price of gRPC,
validation, normalisation and deduplication.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psutil
import psycopg

from bench import DATA, backend_pids, cpu_seconds
from ueba.store.databases import postgres_server, scratch_database
from ueba.db import libpq_url
from ueba.v1 import common_pb2

# 500 users over 10 days is about 260,000 events.
USERS = int(os.environ.get("BENCH_INGEST_USERS", "500"))
DAYS = int(os.environ.get("BENCH_INGEST_DAYS", "10"))
BATCH_SIZE = int(os.environ.get("BENCH_INGEST_BATCH", "5000"))
# The ratio is the capacity target of bench/summary.py (round 2); events/s and memory are floors.
TARGETS = {"events_per_second_min": 20000, "ratio_to_raw_copy_min": 0.8, "ingest_peak_rss_mib_max": 500}

def simulated_events(users: int, days: int) -> list[common_pb2.Event]:
    """A simulated organisation's recent activity (ueba.simulator), ending yesterday."""
    from ueba.simulator import SimulationConfig, simulate

    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return list(simulate(SimulationConfig(users=users, days=days, seed=11, start=today - timedelta(days=days + 1))).events())


class PeakRss:
    """Peak resident memory of a process: the kernel's high-water mark (VmHWM), sampled as a fallback."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.sampled = max(self.sampled, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def peak(self) -> int:
        self._stop.set()
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return max(self.sampled, int(line.split()[1]) * 1024)
        except OSError:
            pass
        return self.sampled


def count_events(url: str) -> int:
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def raw_copy(url: str, batches: list[list[tuple]], days, binary: bool) -> tuple[float, dict]:
    """COPY of ready rows, one transaction per batch: binary with ingest's own encoded rows,
    or text with the same rows as plain Python values (datetime, address strings, JSON text)."""
    from services.ingest.prepare import COLUMNS
    from services.ingest.store import copy_rows
    from ueba.store.partitions import ensure_partitions

    copy_sql = f"COPY events ({', '.join(COLUMNS)}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("TRUNCATE events")
        conn.commit()
        ensure_partitions(conn, days)
        backend = conn.info.backend_pid
        cpu_start = (cpu_seconds(os.getpid()), cpu_seconds(backend))
        started = time.perf_counter()
        with conn.cursor() as cur:
            for rows in batches:
                if binary:
                    copy_rows(cur, copy_sql, rows)  # formatted as ingest formats them
                else:
                    with cur.copy(copy_sql) as copy:
                        for row in rows:
                            copy.write_row(row)
                conn.commit()
        elapsed = time.perf_counter() - started
        cpu = {"python": cpu_seconds(os.getpid()) - cpu_start[0], "postgres": cpu_seconds(backend) - cpu_start[1]}
        return elapsed, cpu


def _empty_events(url: str) -> None:
    """No rows and no partitions, as the end-to-end run found the database before raw COPY ran first."""
    from ueba.store.partitions import drop_before

    with psycopg.connect(libpq_url(url)) as conn:
        drop_before(conn, date.max)


def _plain(row: tuple) -> tuple:
    from services.ingest.prepare import COLUMNS, decode_row

    values = decode_row(row)
    if values["attributes"] is not None:
        values["attributes"] = json.dumps(values["attributes"])
    return tuple(values[c] for c in COLUMNS)


def ingest_env(url: str) -> dict[str, str]:
    """The ingest service of a benchmark: any port, no metrics, no retention, quiet logs."""
    return {"DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1", "UEBA_RETENTION_DAYS": "0",
            "UEBA_LOG_LEVEL": "WARNING"}


def copy_batches(events: list[common_pb2.Event], batch_size: int = BATCH_SIZE) -> tuple[list[list[tuple]], set]:
    """The very rows ingest writes for `events`, prepared ahead of the clock for raw COPY, and their days."""
    from services.ingest.pipeline import preparer_from
    from services.ingest.settings import IngestSettings

    preparer = preparer_from(IngestSettings.from_env({}, retention_days=0))
    batches, days = [], set()
    for i in range(0, len(events), batch_size):
        prepared = preparer.prepare("default", events[i : i + batch_size])
        batches.append(prepared.rows)
        days |= prepared.days
    return batches, days


def per_event(cpu: dict[str, float], rows: int) -> dict[str, float]:
    """CPU seconds per process -> microseconds per event."""
    return {name: round(seconds / rows * 1e6, 2) for name, seconds in cpu.items()}


def _end_to_end(url: str, events: list[common_pb2.Event], log_path: Path) -> tuple[float, int, dict, dict]:
    from ueba.client.ingest import IngestClient
    from ueba.launcher import start_service

    service = start_service("ingest", ingest_env(url), log_path=log_path)
    try:
        rss = PeakRss(service.process.pid)
        cpu_start = (cpu_seconds(os.getpid()), cpu_seconds(service.process.pid))
        with IngestClient(service.address, batch_size=BATCH_SIZE, window=4) as client:
            started = time.perf_counter()
            totals = client.send(events)
            elapsed = time.perf_counter() - started
        # The service's connections were opened during the run: their whole CPU time counts.
        cpu = {
            "client": cpu_seconds(os.getpid()) - cpu_start[0],
            "ingest": cpu_seconds(service.process.pid) - cpu_start[1],
            "postgres": sum(cpu_seconds(pid) for pid in backend_pids(url)),
        }
        peak = rss.peak()
    finally:
        service.stop()
    counts = {"accepted": totals.accepted, "duplicates": totals.duplicates, "rejected": totals.rejected}
    return elapsed, peak, counts, cpu


def run(out_dir: Path) -> dict:
    from ueba.store.migrate import upgrade

    with postgres_server(DATA / "bench") as server_url, scratch_database(server_url, "ueba_bench") as url:
        upgrade(url)
        events = simulated_events(USERS, DAYS)
        batches, days = copy_batches(events)

        # Raw COPY runs before and after the end-to-end run and the ratio takes their mean: on a
        # shared machine the load moves within a minute, and one raw run after it measured
        # anything from 46,000 to 113,000 rows/s beside end-to-end runs of one configuration.
        before_seconds, before_cpu = raw_copy(url, batches, days, binary=True)
        _empty_events(url)
        log_path = Path(tempfile.gettempdir()) / f"bench-ingest-{uuid.uuid4().hex[:8]}.log"
        e2e_seconds, peak_rss, totals, e2e_cpu = _end_to_end(url, events, log_path)
        e2e_rows = count_events(url)
        after_seconds, after_cpu = raw_copy(url, batches, days, binary=True)
        copy_rows = count_events(url)
        copy_seconds = (before_seconds + after_seconds) / 2
        copy_cpu = {name: (before_cpu[name] + after_cpu[name]) / 2 for name in before_cpu}
        plain = [[_plain(r) for r in rows] for rows in batches]
        text_seconds, text_cpu = raw_copy(url, plain, days, binary=False)
        text_rows = count_events(url)

    e2e_rate = e2e_rows / e2e_seconds
    copy_rate = copy_rows / copy_seconds
    text_rate = text_rows / text_seconds
    ratio = e2e_rate / copy_rate
    peak_mib = peak_rss / 2**20

    result = {
        "events": len(events),
        "batch_size": BATCH_SIZE,
        "end_to_end": {
            "seconds": round(e2e_seconds, 2), "rows": e2e_rows, "events_per_second": round(e2e_rate), **totals,
            "cpu_us_per_event": per_event(e2e_cpu, e2e_rows),
        },  # fmt: skip
        # The same encoded rows ingest writes (binary COPY): the strict baseline of the ratio target.
        "raw_copy": {
            "seconds": round(copy_seconds, 2), "rows": copy_rows, "events_per_second": round(copy_rate),
            "cpu_us_per_event": per_event(copy_cpu, copy_rows),
            "events_per_second_before_and_after": [round(copy_rows / before_seconds), round(copy_rows / after_seconds)],
        },  # fmt: skip
        # The same rows as plain Python values through psycopg's text COPY, for comparison.
        "raw_copy_text": {
            "seconds": round(text_seconds, 2), "rows": text_rows, "events_per_second": round(text_rate),
            "cpu_us_per_event": per_event(text_cpu, text_rows),
        },  # fmt: skip
        "load_average_1m": round(os.getloadavg()[0], 2),
        "ratio_to_raw_copy": round(ratio, 3),
        "ratio_to_raw_copy_text": round(e2e_rate / text_rate, 3),
        "ingest_peak_rss_mib": round(peak_mib, 1),
        "database": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded pgserver",
        "cpus": os.cpu_count(),
        "targets": TARGETS,
    }
    result["targets_met"] = bool(
        e2e_rows == len(events)
        and e2e_rate >= TARGETS["events_per_second_min"]
        and ratio >= TARGETS["ratio_to_raw_copy_min"]
        and peak_mib < TARGETS["ingest_peak_rss_mib_max"]
    )
    return result
