"""Ingest throughput end to end against raw COPY, and the ingest process's peak memory.

End to end: the ingest service runs as a process (as in a container) against a
fresh database; an IngestClient streams pre-built events over gRPC; the clock
stops when the last batch is acknowledged, i.e. committed. Raw COPY: the same
rows, already converted, COPY'd with psycopg into `events` in batches of the
same size, one commit each, after a TRUNCATE. Their ratio is the price of gRPC,
validation, normalisation and deduplication.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import psycopg

from ueba.db import libpq_url, with_database
from ueba.v1 import common_pb2

EVENTS = int(os.environ.get("BENCH_INGEST_EVENTS", "300000"))
BATCH_SIZE = int(os.environ.get("BENCH_INGEST_BATCH", "2000"))
TARGETS = {"events_per_second_min": 20000, "ratio_to_raw_copy_min": 0.5, "ingest_peak_rss_mib_max": 500}

_TYPES = [
    (common_pb2.EVENT_TYPE_LOGON, 40),
    (common_pb2.EVENT_TYPE_LOGOFF, 15),
    (common_pb2.EVENT_TYPE_FILE_DOWNLOAD, 12),
    (common_pb2.EVENT_TYPE_FILE_UPLOAD, 5),
    (common_pb2.EVENT_TYPE_HOST_ACCESS, 10),
    (common_pb2.EVENT_TYPE_APP_ACCESS, 15),
    (common_pb2.EVENT_TYPE_FILE_DELETE, 3),
]
_CITIES = [("US", "Boston", 42.36, -71.06), ("DE", "Berlin", 52.52, 13.40), ("GB", "London", 51.51, -0.13)]


def synthetic_events(n: int, users: int = 500, seed: int = 11, end: datetime | None = None) -> list[common_pb2.Event]:
    """Agent-like events over the last days: a mix of types, hosts, addresses, some with geo."""
    rng = random.Random(seed)
    end = end or datetime.now(timezone.utc) - timedelta(minutes=5)
    start = end - timedelta(days=5)
    step = (end - start).total_seconds() / n
    kinds, weights = zip(*_TYPES)
    departments = ["engineering", "finance", "sales", "hr", "it"]
    out = []
    for i in range(n):
        u = rng.randrange(users)
        ev = common_pb2.Event(
            event_id=f"bench-{seed}-{i:09d}",
            user=f"CORP\\User{u:04d}" if i % 3 else f"user{u:04d}@corp.example",
            type=rng.choices(kinds, weights)[0],
            outcome=common_pb2.OUTCOME_FAILURE if rng.random() < 0.05 else common_pb2.OUTCOME_SUCCESS,
            source_ip=f"10.{u % 4}.{u % 250}.{rng.randrange(1, 250)}",
            source_host=f"ws-{u:04d}",
            destination_host=f"srv-{rng.randrange(40):02d}",
            application=rng.choice(["vpn", "sharepoint", "sap", "o365", "ssh"]),
            department=departments[u % len(departments)],
            producer="winevent",
            action="4624",
            logon_type=3,
        )
        ev.time.FromDatetime(start + timedelta(seconds=i * step))
        if ev.type in (common_pb2.EVENT_TYPE_FILE_DOWNLOAD, common_pb2.EVENT_TYPE_FILE_UPLOAD):
            ev.bytes = rng.randrange(1_000, 50_000_000)
            ev.file_count = rng.randrange(1, 20)
            ev.object = f"/share/{departments[u % 5]}/doc-{rng.randrange(10_000)}.xlsx"
        if i % 4 == 0:
            cc, city, lat, lon = _CITIES[u % len(_CITIES)]
            ev.geo.country_code, ev.geo.city = cc, city
            ev.geo.latitude, ev.geo.longitude, ev.geo.has_coordinates = lat, lon, True
        out.append(ev)
    return out


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


def _server_url(out_dir: Path) -> tuple[str, object | None]:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, None
    from ueba.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(out_dir.parent / ".data" / "bench")
    return embedded.start(), embedded


def _count(url: str) -> int:
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def _raw_copy(url: str, batches: list[list[tuple]], days) -> float:
    from services.ingest.prepare import COLUMNS
    from ueba.store.partitions import ensure_partitions

    copy_sql = f"COPY events ({', '.join(COLUMNS)}) FROM STDIN"
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("TRUNCATE events")
        conn.commit()
        ensure_partitions(conn, days)
        started = time.perf_counter()
        with conn.cursor() as cur:
            for rows in batches:
                with cur.copy(copy_sql) as copy:
                    for row in rows:
                        copy.write_row(row)
                conn.commit()
        return time.perf_counter() - started


def _end_to_end(url: str, events: list[common_pb2.Event], log_path: Path) -> tuple[float, int, dict]:
    from ueba.client.ingest import IngestClient
    from ueba.launcher import start_service

    env = {
        "DATABASE_URL": url,
        "UEBA_LISTEN": "127.0.0.1:0",
        "UEBA_METRICS_PORT": "-1",
        "UEBA_RETENTION_DAYS": "0",
        "UEBA_LOG_LEVEL": "WARNING",
    }
    service = start_service("ingest", env, log_path=log_path)
    try:
        rss = PeakRss(service.process.pid)
        with IngestClient(service.address, batch_size=BATCH_SIZE, window=4) as client:
            started = time.perf_counter()
            totals = client.send(events)
            elapsed = time.perf_counter() - started
        peak = rss.peak()
    finally:
        service.stop()
    return elapsed, peak, {"accepted": totals.accepted, "duplicates": totals.duplicates, "rejected": totals.rejected}


def run(out_dir: Path) -> dict:
    from services.ingest.pipeline import preparer_from
    from services.ingest.settings import IngestSettings
    from ueba.store.migrate import upgrade

    server_url, embedded = _server_url(out_dir)
    name = f"ueba_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        upgrade(url)
        events = synthetic_events(EVENTS)
        # Raw COPY gets the very rows ingest would write, converted ahead of the clock.
        preparer = preparer_from(IngestSettings.from_env({}, retention_days=0))
        batches, days = [], set()
        for i in range(0, len(events), BATCH_SIZE):
            prepared = preparer.prepare("default", events[i : i + BATCH_SIZE])
            batches.append(prepared.rows)
            days |= prepared.days

        log_path = Path(tempfile.gettempdir()) / f"bench-ingest-{uuid.uuid4().hex[:8]}.log"
        e2e_seconds, peak_rss, totals = _end_to_end(url, events, log_path)
        e2e_rows = _count(url)
        copy_seconds = _raw_copy(url, batches, days)
        copy_rows = _count(url)
    finally:
        with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if embedded is not None:
            embedded.stop()

    e2e_rate = e2e_rows / e2e_seconds
    copy_rate = copy_rows / copy_seconds
    ratio = e2e_rate / copy_rate
    peak_mib = peak_rss / 2**20
    result = {
        "events": len(events),
        "batch_size": BATCH_SIZE,
        "end_to_end": {"seconds": round(e2e_seconds, 2), "rows": e2e_rows, "events_per_second": round(e2e_rate), **totals},
        "raw_copy": {"seconds": round(copy_seconds, 2), "rows": copy_rows, "events_per_second": round(copy_rate)},
        "ratio_to_raw_copy": round(ratio, 3),
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
