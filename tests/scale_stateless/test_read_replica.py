"""The query service reads from a real streaming replica and shows its lag.

A private primary and a `pg_basebackup -R` replica of it (streaming_replica.py);
the query service as a process with DATABASE_URL on the primary and
UEBA_QUERY_READ_DATABASE_URL on the replica. Replay on the replica is paused
(pg_wal_replay_pause) so that what the service answers tells where it read:

- rows written on the primary after the pause are not in its answers: served
  from the replica; the replica's pg_stat_activity has the service's sessions;
- ueba_query_replica_lag_seconds and _bytes grow on the metrics port;
- a tenant that has just reviewed reads its own review (from the primary),
  while another tenant still reads the paused replica;
- past UEBA_QUERY_REPLICA_MAX_LAG_SECONDS every read goes to the primary, and
  the cached summary totals follow the snapshot they are read in;
- after replay resumes the lag is 0 and reads are back on the replica.
"""

from __future__ import annotations

import uuid

import grpc
import psycopg
import pytest

from tests.query.conftest import Store
from ueba.auth.tokens import create_token
from ueba.db import create_db_engine, libpq_url, with_database
from ueba.launcher import start_service
from ueba.store.migrate import upgrade
from ueba.v1 import query_pb2, query_pb2_grpc

from .metrics import sample
from .streaming_replica import in_recovery, primary_and_replica, wait_until

pytestmark = pytest.mark.e2e

MAX_LAG = 5


def replica_has(replica_url: str, anomaly_id: str) -> bool:
    with psycopg.connect(replica_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM anomalies WHERE id = %s", (anomaly_id,)).fetchone()[0] == 1


def replayed_all(primary_server: str, replica_server: str) -> bool:
    """Whether the replica has replayed everything the primary has written so far."""
    with psycopg.connect(primary_server, autocommit=True) as conn:
        written = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    with psycopg.connect(replica_server, autocommit=True) as conn:
        return conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (written,)).fetchone()[0]


def replayed_marker(primary_url: str, replica_url: str) -> None:
    """A fresh commit on the primary, replayed: the replica's last replayed transaction is now."""
    marker = uuid.uuid4().hex
    with psycopg.connect(primary_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS replay_marker (id text)")
        conn.execute("INSERT INTO replay_marker VALUES (%s)", (marker,))

    def seen() -> bool:
        with psycopg.connect(replica_url, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'replay_marker'").fetchone()[0] == 1 and \
                conn.execute("SELECT count(*) FROM replay_marker WHERE id = %s", (marker,)).fetchone()[0] == 1

    wait_until(seen, what="the marker on the replica")


class Analyst:
    def __init__(self, channel: grpc.Channel, secret: str):
        self.stub = query_pb2_grpc.QueryServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {secret}"),)

    def anomalies(self) -> dict[str, int]:
        """Anomaly id -> status of every anomaly the service shows this tenant."""
        page = self.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(page_size=100), metadata=self.metadata, timeout=10)
        return {a.id: a.status for a in page.anomalies}

    def total(self) -> int:
        return self.stub.GetSummary(query_pb2.GetSummaryRequest(), metadata=self.metadata, timeout=10).total_anomalies

    def resolve(self, anomaly_id: str) -> int:
        request = query_pb2.ReviewAnomaliesRequest(action=query_pb2.REVIEW_ACTION_RESOLVE, ids=[anomaly_id], comment="seen")
        return self.stub.ReviewAnomalies(request, metadata=self.metadata, timeout=10).updated


def test_queries_are_served_from_a_streaming_replica_with_its_lag_in_metrics(tmp_path):
    with primary_and_replica() as (primary, replica):
        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE ueba")
        primary_url, replica_url = with_database(primary.url, "ueba"), libpq_url(with_database(replica.url, "ueba"))
        upgrade(primary_url)
        # The database and its tables exist on the replica once it has replayed the migrations.
        wait_until(lambda: replayed_all(primary.url, replica.url), what="the replica to replay the migrations")
        assert in_recovery(replica_url) and not in_recovery(libpq_url(primary_url))
        engine = create_db_engine(primary_url, pool_size=2)
        try:
            t1, t2 = (f"t{uuid.uuid4().hex[:8]}" for _ in range(2))
            s1, s2 = Store(engine, primary_url, t1), Store(engine, primary_url, t2)
            secrets = []
            with engine.begin() as conn:
                for tenant in (t1, t2):
                    secrets.append(create_token(conn, tenant, "analyst", "analyst", "tests")[1])
            a1, b1 = s1.anomaly("alice", 70), s2.anomaly("bob", 60)
            wait_until(lambda: replica_has(replica_url, b1), what="the anomalies on the replica")

            service = start_service("query", log_path=tmp_path / "query.log", env={
                "DATABASE_URL": primary_url, "UEBA_QUERY_READ_DATABASE_URL": replica_url,
                "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "0",
                "UEBA_AUTH": "tokens", "UEBA_AUTH_CACHE_SECONDS": "5", "UEBA_RATE_LIMIT_PER_SECOND": "0",
                "UEBA_QUERY_REPLICA_SAMPLE_SECONDS": "0.2", "UEBA_QUERY_REPLICA_MAX_LAG_SECONDS": str(MAX_LAG),
                "UEBA_QUERY_MAINTENANCE_SECONDS": "0.2",
            })
            metric = lambda name, **labels: sample(service, name, **labels)  # noqa: E731
            channel = grpc.insecure_channel(service.address)
            try:
                first, second = Analyst(channel, secrets[0]), Analyst(channel, secrets[1])
                wait_until(lambda: metric("ueba_query_replica_up") == 1, what="a replica sample")
                assert first.anomalies() == {a1: 1} and second.anomalies() == {b1: 1} and second.total() == 1
                assert metric("ueba_query_reads_total", database="replica") >= 3
                with psycopg.connect(replica_url, autocommit=True) as conn:
                    sessions = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'ueba' AND application_name = 'ueba-query'"
                    ).fetchone()[0]
                assert sessions >= 1, "the service has no session on the replica"

                # Pause replay just after a commit, so the lag starts from about now.
                replayed_marker(libpq_url(primary_url), replica_url)
                with psycopg.connect(replica_url, autocommit=True) as conn:
                    conn.execute("SELECT pg_wal_replay_pause()")
                    wait_until(lambda: conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] == "paused",
                               what="replay to pause")
                a2, b2 = s1.anomaly("alice", 80), s2.anomaly("bob", 90)

                # A sample after these writes shows the lag (and clears older pins: the
                # refresh GetSummary made for the second tenant had been replayed).
                wait_until(lambda: metric("ueba_query_replica_lag_bytes") > 0, what="lag in bytes")
                wait_until(lambda: 0 < metric("ueba_query_replica_lag_seconds"), what="lag in seconds")
                # Served from the replica: the new rows are on the primary only.
                assert second.anomalies() == {b1: 1} and second.total() == 1
                # Read your own writes: the reviewing tenant reads the primary...
                assert first.resolve(a1) == 1
                assert first.anomalies() == {a1: 3, a2: 1}
                # ...the other one still the paused replica, until the lag passes the limit.
                assert second.anomalies() == {b1: 1}
                wait_until(lambda: metric("ueba_query_replica_lag_seconds") > MAX_LAG, timeout=3 * MAX_LAG,
                           what="the lag to pass the limit")
                on_primary = metric("ueba_query_reads_total", database="primary")
                assert second.anomalies() == {b1: 1, b2: 1} and second.total() == 2
                assert metric("ueba_query_reads_total", database="primary") == on_primary + 2

                with psycopg.connect(replica_url, autocommit=True) as conn:
                    conn.execute("SELECT pg_wal_replay_resume()")
                wait_until(lambda: metric("ueba_query_replica_lag_seconds") == 0, what="the replica to catch up")
                on_replica = metric("ueba_query_reads_total", database="replica")
                assert first.anomalies() == {a1: 3, a2: 1}
                assert second.anomalies() == {b1: 1, b2: 1} and second.total() == 2
                assert metric("ueba_query_reads_total", database="replica") == on_replica + 3
                assert replica_has(replica_url, b2)
            finally:
                channel.close()
                assert service.stop() == 0
        finally:
            engine.dispose()
