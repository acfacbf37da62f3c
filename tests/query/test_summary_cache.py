"""The summary's rollup cache: used while the tenant's rollup version holds, never after a change.

The tests plant a wrong value in the cache: a summary that shows it proves the
cache was read; one that does not proves it was bypassed.
"""

from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import delete, insert

from services.query.store.risk_state import merge_rollups
from services.query.store.reads import Reads
from services.query.summary import NO_VERSION, RollupCache, summary
from ueba.db import create_db_engine, libpq_url
from ueba.store.schema import anomalies, ignored_users
from ueba.v1 import query_pb2

from .conftest import NOW, Store

START, END = NOW - timedelta(days=5), NOW  # whole days and hours: mostly read from the rollups
PLANTED = ("profile", "planted", 1000, 1000)


@pytest.fixture
def reads(engine):
    r = Reads(engine, 2)
    yield r
    r.stop()


def totals(reads, cache, tenant, include_ignored=False):
    data = summary(reads, cache, tenant, START, END, include_ignored, 10, NOW - timedelta(days=30), refresh=lambda: None)
    return data.totals


def plant(cache) -> None:
    """Adds a made-up rollup row to every cached entry, keeping its version."""
    for key, (version, rolled) in list(cache._items.items()):
        cache._items[key] = (version, [*rolled, PLANTED])


def planted(t) -> bool:
    return t.anomalies["profile"].get("planted", 0) == 1000


def by_status(t) -> dict:
    return {k: v for k, v in t.anomalies["status"].items() if v}


def test_cache_is_read_while_nothing_changed(reads, store):
    for day in range(1, 4):
        store.anomaly("amy", 80, NOW - timedelta(days=day, hours=3))
    cache = RollupCache(8)
    first = totals(reads, cache, store.tenant)
    assert by_status(first) == {"new": 3} and not planted(first)
    plant(cache)
    assert planted(totals(reads, cache, store.tenant))  # same version: the rollup was not read again


def test_review_and_new_anomalies_invalidate(svc, reads, store):
    ids = [store.anomaly("amy", 80, NOW - timedelta(days=day, hours=3)) for day in range(1, 4)]
    cache = RollupCache(8)
    totals(reads, cache, store.tenant)
    plant(cache)
    svc.stub.ReviewAnomalies(query_pb2.ReviewAnomaliesRequest(action=query_pb2.REVIEW_ACTION_RESOLVE, ids=ids[:1]))
    after_review = totals(reads, cache, store.tenant)
    assert not planted(after_review) and by_status(after_review) == {"new": 2, "resolved": 1}

    plant(cache)
    store.anomaly("ben", 95, NOW - timedelta(days=2))
    after_insert = totals(reads, cache, store.tenant)
    assert not planted(after_insert) and by_status(after_insert) == {"new": 3, "resolved": 1}
    # And through the API: a summary right after a review shows the review.
    s = svc.stub.GetSummary(query_pb2.GetSummaryRequest())
    svc.stub.ReviewAnomalies(query_pb2.ReviewAnomaliesRequest(action=query_pb2.REVIEW_ACTION_ACKNOWLEDGE, ids=ids[1:2]))
    s2 = svc.stub.GetSummary(query_pb2.GetSummaryRequest())
    assert s2.new_anomalies == s.new_anomalies - 1 and s2.reviewed_anomalies == s.reviewed_anomalies + 1


def test_a_merge_then_as_many_new_deltas_still_invalidates(reads, store, engine):
    # The unmerged-delta count alone would come back to the cached value here;
    # the generation the merge bumps is what tells the two states apart.
    store.anomaly("amy", 80, NOW - timedelta(days=2))
    cache = RollupCache(8)
    totals(reads, cache, store.tenant)
    ((version, _rolled),) = cache._items.values()
    plant(cache)
    while merge_rollups(engine):
        pass
    store.anomaly("amy", 30, NOW - timedelta(days=3))
    after = totals(reads, cache, store.tenant)
    ((new_version, _rolled),) = cache._items.values()
    assert new_version[1] == version[1] and new_version[0] > version[0]
    assert not planted(after) and after.anomalies["level"] == {"high": 1, "low": 1}


def test_deletes_and_ignored_users_are_seen(reads, store, engine):
    store.anomaly("amy", 80, NOW - timedelta(days=2))
    store.anomaly("cat", 50, NOW - timedelta(days=2))
    cache = RollupCache(8)
    totals(reads, cache, store.tenant)
    with engine.begin() as conn:
        conn.execute(insert(ignored_users).values(tenant=store.tenant, user_name="cat"))
    # The ignore list is applied on every call, outside the cached totals.
    assert by_status(totals(reads, cache, store.tenant)) == {"new": 1}
    assert by_status(totals(reads, cache, store.tenant, include_ignored=True)) == {"new": 2}
    with engine.begin() as conn:
        conn.execute(delete(anomalies).where(anomalies.c.tenant == store.tenant, anomalies.c.user_name == "amy"))
    assert by_status(totals(reads, cache, store.tenant, include_ignored=True)) == {"new": 1}


def test_truncate_invalidates(fresh_database_url):
    engine = create_db_engine(fresh_database_url, 2)
    reads = Reads(engine, 2)
    try:
        store = Store(engine, fresh_database_url, "t1")
        store.anomaly("amy", 80, NOW - timedelta(days=2))
        cache = RollupCache(8)
        assert by_status(totals(reads, cache, "t1")) == {"new": 1}
        while merge_rollups(engine):  # no unmerged deltas: only the generation can change
            pass
        assert by_status(totals(reads, cache, "t1")) == {"new": 1}
        plant(cache)
        with psycopg.connect(libpq_url(fresh_database_url), autocommit=True) as conn:
            conn.execute("TRUNCATE anomalies")
        after = totals(reads, cache, "t1")
        assert not planted(after) and by_status(after) == {}
    finally:
        reads.stop()
        engine.dispose()


def test_cache_keeps_the_most_recent_entries():
    cache = RollupCache(2)
    for i in range(3):
        cache.put(("t", i), (1, 1), [])
    cache.get(("t", 1))
    cache.put(("t", 3), (1, 1), [])
    assert set(cache._items) == {("t", 1), ("t", 3)}
    off = RollupCache(0)
    off.put(("t", 0), (1, 1), [])
    assert off.get(("t", 0)) is None and NO_VERSION == (-1, -1)
