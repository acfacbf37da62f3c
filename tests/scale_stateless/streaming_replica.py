"""A private primary and its streaming replica, made with the installed PostgreSQL binaries.

Never the machine's shared server: a base backup would copy every other
test's databases. The primary is a fresh initdb (tests/security/pgctl.py),
whose defaults already allow a replica: wal_level=replica, WAL senders, and
trusted replication connections from 127.0.0.1. The replica is
`pg_basebackup -R` of it (standby.signal and primary_conninfo written for us),
started on a port of its own as a hot standby.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import psycopg

from tests.security.pgctl import PrivatePostgres, pg_bin, server_user


class StreamingReplica(PrivatePostgres):
    def clone(self, primary: PrivatePostgres) -> "StreamingReplica":
        self._run("pg_basebackup", "-D", str(self.data), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                  "-R", "-X", "stream", "-c", "fast", timeout=120)
        return self


@contextmanager
def primary_and_replica() -> Iterator[tuple[PrivatePostgres, StreamingReplica]]:
    bin_dir, user = pg_bin(), server_user()
    assert bin_dir is not None, "no PostgreSQL server binaries (initdb, pg_ctl), not even the embedded Postgres's"
    primary = PrivatePostgres(bin_dir, user).init()
    replica = StreamingReplica(bin_dir, user)
    try:
        primary.start()
        replica.clone(primary).start()
        yield primary, replica
    finally:
        for server in (replica, primary):
            if server.running():
                server.stop("immediate")
            server.remove()


def wait_until(check, timeout: float = 30.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def in_recovery(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
