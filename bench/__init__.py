"""Benchmarks (`make bench`) and the detection evaluation (`make eval`)."""

from pathlib import Path

import psutil
import psycopg

from ueba.db import libpq_url

# Where benchmarks keep their embedded Postgres and outputs.
DATA = Path(__file__).resolve().parent.parent / ".data"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except psutil.Error:
        return 0.0


def backend_pids(url: str) -> list[int]:
    """Server processes of the database's other connections (Postgres runs on this machine)."""
    with psycopg.connect(libpq_url(url)) as conn:
        return [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )]  # fmt: skip
