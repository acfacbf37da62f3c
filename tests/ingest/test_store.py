"""The pipeline against real Postgres: writes, idempotency, users, partitions and retention."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from services.ingest.maintenance import partition_upkeep
from services.ingest.pipeline import IngestPipeline, InvalidBatch
from ueba.db import create_db_engine, libpq_url
from ueba.store import partitions
from ueba.store.partitions import EVENTS, PartitionCache
from ueba.v1 import common_pb2

from .conftest import make_event, settings

HOUR_AGO = datetime.now(timezone.utc).replace(microsecond=250_000) - timedelta(hours=1)


def stored(pg, tenant: str) -> list[tuple]:
    return pg.execute(
        "SELECT event_id, time, user_name, event_type, outcome, host(source_ip), trusted_source, country, bytes, attributes"
        " FROM events WHERE tenant = %s ORDER BY time, event_id",
        (tenant,),
    ).fetchall()


def batch(n: int, prefix: str = "e", **fields) -> list[common_pb2.Event]:
    return [make_event(event_id=f"{prefix}-{i}", time=HOUR_AGO + timedelta(seconds=i), **fields) for i in range(n)]


def test_a_batch_is_stored_as_normalised_rows(pipeline, pg, tenant):
    events = batch(3, user="CORP\\Alice", source_ip="10.0.0.7", bytes=512, attributes={"k": "v"})
    ack = pipeline.ingest(tenant, events, batch_id="b-1")
    assert (ack.batch_id, ack.accepted, ack.duplicates, ack.rejected) == ("b-1", 3, 0, 0)
    rows = stored(pg, tenant)
    assert [r[0] for r in rows] == ["e-0", "e-1", "e-2"]
    assert rows[0][1:] == (HOUR_AGO, "alice", "logon", "success", "10.0.0.7", False, None, 512, {"k": "v"})


def test_the_same_batch_twice_is_stored_once(pipeline, pg, tenant):
    events = batch(50)
    first = pipeline.ingest(tenant, events)
    again = pipeline.ingest(tenant, events)
    assert (first.accepted, first.duplicates) == (50, 0)
    assert (again.accepted, again.duplicates) == (0, 50)
    assert len(stored(pg, tenant)) == 50


def test_a_batch_overlapping_stored_events_keeps_only_the_new_ones(pipeline, pg, tenant):
    pipeline.ingest(tenant, batch(10))
    ack = pipeline.ingest(tenant, batch(15) + batch(2))  # 5 new, 10 stored before, 2 repeated in the batch
    assert (ack.accepted, ack.duplicates) == (5, 12)
    assert len(stored(pg, tenant)) == 15


def test_events_without_id_are_recognised_when_resent(pipeline, pg, tenant):
    events = [make_event(time=HOUR_AGO + timedelta(seconds=i), source_host=f"ws-{i}") for i in range(20)]
    assert pipeline.ingest(tenant, events).accepted == 20
    again = pipeline.ingest(tenant, [common_pb2.Event.FromString(e.SerializeToString()) for e in events])
    assert (again.accepted, again.duplicates) == (0, 20)
    ids = [r[0] for r in stored(pg, tenant)]
    assert len(set(ids)) == 20 and all(i.startswith("h") for i in ids)


def test_rejected_events_are_reported_and_the_rest_stored(pipeline, pg, tenant):
    events = batch(4)
    events[1].source_ip = "999.1.1.1"
    events[3].ClearField("time")
    ack = pipeline.ingest(tenant, events)
    assert (ack.accepted, ack.rejected) == (2, 2)
    assert [(r.index, r.field, r.event_id) for r in ack.rejections] == [(1, "source_ip", "e-1"), (3, "time", "e-3")]
    assert [r[0] for r in stored(pg, tenant)] == ["e-0", "e-2"]


def test_empty_and_oversize_batches_are_refused_whole(engine, tenant):
    p = IngestPipeline(settings(max_batch_size=5), engine)
    with pytest.raises(InvalidBatch, match="empty"):
        p.ingest(tenant, [])
    with pytest.raises(InvalidBatch, match="UEBA_MAX_BATCH_SIZE"):
        p.ingest(tenant, batch(6))


def test_users_table_keeps_first_and_last_sighting_and_department(pipeline, pg, tenant):
    pipeline.ingest(tenant, [make_event(event_id="u1", user="bob", time=HOUR_AGO, department="Sales")])
    pipeline.ingest(tenant, [make_event(event_id="u2", user="CORP\\Bob", time=HOUR_AGO + timedelta(minutes=30), department="Finance")])
    # An older event moves first_seen back but does not overwrite the newer department.
    pipeline.ingest(tenant, [make_event(event_id="u3", user="bob@corp", time=HOUR_AGO - timedelta(days=2), department="Legal")])
    row = pg.execute("SELECT department, first_seen, last_seen FROM users WHERE tenant = %s AND user_name = 'bob'", (tenant,)).fetchone()
    assert row == ("Finance", HOUR_AGO - timedelta(days=2), HOUR_AGO + timedelta(minutes=30))


def test_concurrent_writers_of_the_same_events_store_them_once(pipeline, pg, tenant):
    events = batch(300)
    acks = []

    def send():
        acks.append(pipeline.ingest(tenant, events))

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(a.accepted for a in acks) == 300
    assert sum(a.duplicates for a in acks) == 600
    assert len(stored(pg, tenant)) == 300


@pytest.fixture(scope="module")
def partition_db(server_url):
    """A database of this module's own: these tests create and drop partitions."""
    from ueba.store.databases import drop_database, new_database
    from ueba.store.migrate import upgrade

    name, url = new_database(server_url, "ueba_ingest_parts")
    upgrade(url)
    eng = create_db_engine(url, pool_size=2)
    yield eng, url
    eng.dispose()
    drop_database(server_url, name)


def test_an_event_for_a_day_without_partition_creates_it(partition_db, tenant):
    engine, url = partition_db
    old = datetime.now(timezone.utc) - timedelta(days=200)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        assert old.date() not in partitions.existing_partitions(conn)
        p = IngestPipeline(settings(), engine)
        ack = p.ingest(tenant, [make_event(event_id="old", time=old), make_event(event_id="new")])
        assert ack.accepted == 2
        assert old.date() in partitions.existing_partitions(conn)
        # Someone else drops that day (retention in another replica): this
        # process's cache is stale, and the next event for it is still stored.
        partitions.drop_before(conn, old.date() + timedelta(days=1))
        ack = p.ingest(tenant, [make_event(event_id="old-2", time=old)])
        assert ack.accepted == 1
        assert conn.execute("SELECT count(*) FROM events WHERE event_id = 'old-2'").fetchone()[0] == 1


def test_maintenance_creates_days_ahead_and_drops_days_past_retention(partition_db):
    engine, url = partition_db
    today = date(2026, 11, 20)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        partitions.ensure_partitions(conn, {date(2026, 8, 1), date(2026, 10, 21), date(2026, 10, 22)})
        partition_upkeep(settings(retention_days=0), engine, PartitionCache(EVENTS), today=lambda: today).run_once()
        assert date(2026, 8, 1) in partitions.existing_partitions(conn)  # retention 0: keep everything

        cache = PartitionCache(EVENTS)
        cache.add({date(2026, 8, 1)})
        job = partition_upkeep(settings(retention_days=30, partitions_ahead_days=2), engine, cache, today=lambda: today)
        dropped = job.run_once()
        have = partitions.existing_partitions(conn)
    assert "events_p20260801" in dropped
    assert all(name < "events_p20261021" for name in dropped)
    assert date(2026, 8, 1) not in have
    assert {date(2026, 10, 21), date(2026, 10, 22)} <= have  # within 30 days: kept
    assert {today, today + timedelta(days=1), today + timedelta(days=2)} <= have
    assert cache.missing({date(2026, 8, 1)}) == {date(2026, 8, 1)}  # the cache forgot the dropped day


def test_metrics_count_accepted_duplicate_and_rejected_events(pipeline, tenant):
    from prometheus_client import REGISTRY

    def value(result: str) -> float:
        return REGISTRY.get_sample_value("ueba_ingest_events_total", {"result": result}) or 0.0

    before = {r: value(r) for r in ("accepted", "duplicate", "rejected")}
    events = batch(3, prefix="m")
    events.append(make_event(event_id="m-bad", user=""))
    pipeline.ingest(tenant, events)
    pipeline.ingest(tenant, events[:2])
    assert {r: value(r) - before[r] for r in before} == {"accepted": 3, "duplicate": 2, "rejected": 1}
    assert REGISTRY.get_sample_value("ueba_ingest_batch_commit_seconds_count") >= 2


def test_a_batch_that_stored_events_announces_its_commit_and_one_of_repeats_does_not(pipeline, pg, tenant):
    from ueba.store.commits import CHANNEL

    pg.execute(f"LISTEN {CHANNEL}")
    pipeline.ingest(tenant, batch(5))
    heard = list(pg.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in heard] == [CHANNEL]
    pipeline.ingest(tenant, batch(5))  # stored before: nothing new to look at
    assert list(pg.notifies(timeout=0.5)) == []
