"""Several batches to a transaction (store.write_group, GroupCommit), against real Postgres."""

from __future__ import annotations

import threading

import psycopg
import pytest

from services.ingest.pipeline import IngestPipeline
from services.ingest.prepare import PreparedBatch
from ueba.db import libpq_url

from tests.support.waiting import eventually

from .conftest import settings
from .test_store import batch, stored


def transactions(pg, tenant: str) -> dict[str, int]:
    """Event id prefix -> the number of transactions that wrote the events with that prefix."""
    rows = pg.execute(
        "SELECT split_part(event_id, '-', 1), count(DISTINCT txid) FROM events WHERE tenant = %s GROUP BY 1", (tenant,)
    ).fetchall()
    return dict(rows)


def prepared(pipeline: IngestPipeline, tenant: str, n: int, prefix: str, **fields) -> PreparedBatch:
    return pipeline.preparer.prepare(tenant, batch(n, prefix=prefix, **fields))


def test_batches_of_new_events_share_one_transaction_and_each_gets_its_own_count(pipeline, pg, tenant):
    first = prepared(pipeline, tenant, 3, "a", user="alice", department="sales")
    second = prepared(pipeline, tenant, 5, "b", user="alice", department="finance")
    assert pipeline.store.write_group([(tenant, first), (tenant, second)]) == [3, 5]
    assert len(stored(pg, tenant)) == 8
    txids = pg.execute("SELECT count(DISTINCT txid) FROM events WHERE tenant = %s", (tenant,)).fetchone()[0]
    assert txids == 1
    # One sighting of the two batches: the first event of the first, the last (and its department) of the second.
    user = pg.execute(
        "SELECT first_seen, last_seen, department FROM users WHERE tenant = %s AND user_name = 'alice'", (tenant,)
    ).fetchone()
    times = pg.execute("SELECT min(time), max(time) FROM events WHERE tenant = %s", (tenant,)).fetchone()
    assert user == (times[0], times[1], "finance")


def test_a_group_holding_a_resent_batch_stores_the_new_events_once(pipeline, pg, tenant):
    assert pipeline.store.write_group([(tenant, prepared(pipeline, tenant, 4, "a"))]) == [4]
    resent, new = prepared(pipeline, tenant, 4, "a"), prepared(pipeline, tenant, 6, "b")
    assert pipeline.store.write_group([(tenant, new), (tenant, resent)]) == [6, 0]
    assert len(stored(pg, tenant)) == 10


def test_a_batch_postgres_refuses_fails_alone_and_the_rest_of_its_group_is_stored(pipeline, pg, tenant):
    good = prepared(pipeline, tenant, 3, "a")
    bad = prepared(pipeline, tenant, 2, "b")
    # A NUL in a text column, which prepare never lets through: Postgres refuses the row.
    bad.rows[1] = (bad.rows[1][0], "b-\x00") + bad.rows[1][2:]
    outcomes = pipeline.store.write_group([(tenant, bad), (tenant, good)])
    assert isinstance(outcomes[0], psycopg.DataError)
    assert outcomes[1] == 3
    assert [r[0] for r in stored(pg, tenant)] == ["a-0", "a-1", "a-2"]


def test_batches_waiting_for_a_busy_writer_are_committed_together_and_acked_each_with_its_own(
    engine, database_url, pg, tenant
):
    pipeline = IngestPipeline(settings(writers=1), engine)
    try:
        pipeline.ingest(tenant, batch(1, prefix="seed", user="alice"))
        # Holding alice's users row keeps the one writer inside the next transaction.
        blocker = psycopg.connect(libpq_url(database_url))
        blocker.execute("SELECT 1 FROM users WHERE tenant = %s AND user_name = 'alice' FOR UPDATE", (tenant,))
        acks: dict[str, int] = {}

        def send(prefix: str, n: int) -> None:
            acks[prefix] = pipeline.ingest(tenant, batch(n, prefix=prefix, user="alice")).accepted

        first = threading.Thread(target=send, args=("a", 2))
        first.start()
        eventually(lambda: pipeline.writer.waiting == 0 and blocked_on_users(pg))
        others = [threading.Thread(target=send, args=(p, n)) for p, n in (("b", 3), ("c", 4), ("d", 5))]
        for thread in others:
            thread.start()
        eventually(lambda: pipeline.writer.waiting == 3)
        assert acks == {}  # nothing acknowledged before its commit
        blocker.rollback()
        for thread in [first, *others]:
            thread.join(timeout=30)
        blocker.close()
        assert acks == {"a": 2, "b": 3, "c": 4, "d": 5}
        assert transactions(pg, tenant) == {"seed": 1, "a": 1, "b": 1, "c": 1, "d": 1}
        txids = pg.execute(
            "SELECT count(DISTINCT txid) FROM events WHERE tenant = %s AND event_id !~ '^(seed|a)-'", (tenant,)
        ).fetchone()[0]
        assert txids == 1
    finally:
        pipeline.close()


def blocked_on_users(pg) -> bool:
    """Whether some session waits for a lock while upserting users."""
    return bool(pg.execute(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        " AND query LIKE '%%INSERT INTO users%%'"
    ).fetchone())


@pytest.mark.parametrize("writers", [1, 2])
def test_many_callers_each_get_the_count_of_their_own_batch(engine, pg, tenant, writers):
    pipeline = IngestPipeline(settings(writers=writers), engine)
    acks: dict[str, int] = {}
    sizes = {f"p{i}": 10 + i for i in range(12)}

    def send(prefix: str) -> None:
        acks[prefix] = pipeline.ingest(tenant, batch(sizes[prefix], prefix=prefix)).accepted

    threads = [threading.Thread(target=send, args=(p,)) for p in sizes]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        pipeline.close()
    assert acks == sizes
    assert len(stored(pg, tenant)) == sum(sizes.values())
