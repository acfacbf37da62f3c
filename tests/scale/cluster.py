"""Service processes sharing one database through bucket leases, as the scale tests see them."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import psycopg

from ueba.db import libpq_url
from ueba.launcher import ServiceProcess


class LeaseCluster:
    """Replicas by name, their lease holdings in `pool`, and polling for a condition."""

    pool = ""

    def __init__(self, url: str, tmp: Path):
        self.url, self.tmp = url, tmp
        self.procs: dict[str, ServiceProcess] = {}

    def query(self, sql: str, *params):
        with psycopg.connect(libpq_url(self.url)) as conn:
            return conn.execute(sql, params).fetchall()

    def owner(self, name: str) -> str:
        pid = self.procs[name].process.pid
        rows = self.query("SELECT owner FROM work_lease_members WHERE pool = %s AND owner LIKE %s",
                          self.pool, f"%:{pid}:%")
        assert len(rows) == 1, rows
        return rows[0][0]

    def holdings(self, pool: str | None = None) -> Counter:
        return Counter(o for (o,) in self.query(
            "SELECT owner FROM work_leases WHERE pool = %s AND owner IS NOT NULL AND expires_at > now()",
            pool or self.pool))

    def wait(self, what: str, check, timeout: float, step: float = 0.1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            time.sleep(step)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")
