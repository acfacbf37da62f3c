"""ListAnomalies' capped count cache: read while the data version holds, never after a change.

The tests plant a wrong count in the cache: a page that shows it proves the cache was read; one
that does not proves the count was read again. The changes below include updates that move no
counted facet (a description, an incident), which only migration 0020's zero delta makes visible.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, update

from services.query.anomalies import CountCache, list_page
from services.query.store.reads import Reads
from services.query.store.risk_state import merge_rollups
from ueba.store.schema import anomalies, ignored_users
from ueba.v1 import query_pb2

from .conftest import NOW

PLANTED = 777
LIMIT = 1000


@pytest.fixture
def reads(engine):
    r = Reads(engine, 2)
    yield r
    r.stop()


def total(reads, cache, tenant, query: str) -> int:
    f = query_pb2.AnomalyFilter(query=query)
    page = list_page(reads, tenant, f, "time desc", 10, "", LIMIT, datetime.now(timezone.utc), "strip_domain", cache)
    return page.total


def plant(cache) -> None:
    for key, (version, _count) in list(cache._items.items()):
        cache._items[key] = (version, PLANTED)


def test_the_count_is_reused_while_nothing_changed(reads, store):
    store.anomaly("amy", 80, description="login from a new country")
    store.anomaly("ben", 40, description="login from a new country")
    cache = CountCache(8)
    assert total(reads, cache, store.tenant, '"new country"') == 2
    plant(cache)
    assert total(reads, cache, store.tenant, '"new country"') == PLANTED  # the statement skipped the count
    assert total(reads, cache, store.tenant, "user:amy") == 1  # other criteria: their own entry


@pytest.mark.parametrize("change", ["description", "incident", "insert", "delete", "ignore", "merge"])
def test_every_change_reads_the_count_again(reads, store, engine, change):
    ids = [store.anomaly(user, 80, description="login from a new country") for user in ("amy", "ben")]
    cache = CountCache(8)
    while merge_rollups(engine):  # a clean version: only the change below can move it
        pass
    assert total(reads, cache, store.tenant, '"new country"') == 2
    plant(cache)
    a = anomalies.c
    with engine.begin() as conn:
        if change == "description":  # a refreshed finding: no counted facet moves
            conn.execute(update(anomalies).where(a.id == ids[0]).values(description="login at night"))
        elif change == "incident":
            conn.execute(update(anomalies).where(a.id == ids[0]).values(incident_id=None, entity="amy-laptop"))
        elif change == "insert":
            pass
        elif change == "delete":
            conn.execute(anomalies.delete().where(a.id == ids[0]))
        elif change == "ignore":
            conn.execute(insert(ignored_users).values(tenant=store.tenant, user_name="amy"))
    if change == "insert":
        store.anomaly("cat", 30, NOW - timedelta(days=1), description="a new country again")
    if change == "merge":  # the merge alone changes no answer; the version moves all the same
        store.anomaly("cat", 30, NOW - timedelta(days=1), description="nothing to see")
        while merge_rollups(engine):
            pass
    expected = {"description": 1, "incident": 2, "insert": 3, "delete": 1, "ignore": 1, "merge": 2}[change]
    assert total(reads, cache, store.tenant, '"new country"') == expected


def test_an_empty_result_and_later_pages_are_not_cached(reads, store):
    store.anomaly("amy", 80, description="login from a new country")
    cache = CountCache(8)
    assert total(reads, cache, store.tenant, "nowhere") == 0
    assert not cache._items
    f = query_pb2.AnomalyFilter(query="")
    first = list_page(reads, store.tenant, f, "time desc", 1, "", LIMIT, NOW, "strip_domain", cache)
    assert len(cache._items) == 1 and first.total == 1


def test_the_service_counts_through_the_cache(svc):
    for user in ("amy", "ben", "cat"):
        svc.store.anomaly(user, 60, description="login from a new country")
    request = query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(query='"new country"'), page_size=2)
    first = svc.stub.ListAnomalies(request)
    again = svc.stub.ListAnomalies(request)
    assert (first.total_size, again.total_size) == (3, 3) and not again.total_size_capped
    svc.stub.AddIgnoredUser(query_pb2.AddIgnoredUserRequest(user="amy", reason="test"))
    assert svc.stub.ListAnomalies(request).total_size == 2
