"""Hourly risk timelines from the merged hour totals, checked against counts made here."""

import random
from datetime import timedelta, timezone

from sqlalchemy import select, update

from services.query import timelines
from services.query.store.risk_state import merge_rollups
from ueba.store.schema import anomalies, anomaly_rollup, ignored_users, risk_hour_totals
from ueba.v1 import common_pb2, query_pb2

from .conftest import NOW

COUNTED = ("new", "acknowledged", "resolved")


def expected(rows, start, end, step, include_ignored=False, ignored=("ignored-ed",)):
    """[(anomalies, points, accounts)] of every bucket of [start, end), counted from the rows themselves."""
    out, lo = [], start
    while lo < end:
        hi = min(end, lo + step)
        inside = [(r.user_name, r.risk_score) for r in rows
                  if lo <= r.time < hi and r.status in COUNTED and (include_ignored or r.user_name not in ignored)]
        out.append((len(inside), sum(s for _u, s in inside), len({u for u, _s in inside if u})))
        lo = hi
    return out


def test_hourly_timeline_matches_anomalies_before_and_after_merges(svc, store, engine):
    rnd = random.Random(11)
    start = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=40)
    end = start + timedelta(hours=30, minutes=25)  # the last hour is cut at `end`
    for _ in range(300):
        store.anomaly(rnd.choice(["ann", "bo", "cy", "di", "ignored-ed", ""]), rnd.randrange(1, 101),
                      start + timedelta(minutes=rnd.randrange(-90, 32 * 60)),
                      status=rnd.choice(["new", "new", "acknowledged", "resolved", "false_positive", "suppressed"]))
    svc.stub.AddIgnoredUser(query_pb2.AddIgnoredUserRequest(user="ignored-ed"))
    rng = common_pb2.TimeRange()
    rng.start.FromDatetime(start)
    rng.end.FromDatetime(end)

    def check(state: str) -> None:
        rows = store.rows(select(anomalies).where(anomalies.c.tenant == store.tenant))
        got = svc.stub.GetRiskTimeline(query_pb2.GetRiskTimelineRequest(range=rng, bucket_seconds=3600))
        assert [(b.anomalies, b.risk_points, b.users) for b in got.buckets] == expected(rows, start, end, timedelta(hours=1)), state
        with engine.connect() as conn:
            with_ignored = timelines.risk_buckets(conn, store.tenant, start, end, 3600, include_ignored=True)
        assert [b[1:] for b in with_ignored] == expected(rows, start, end, timedelta(hours=1), include_ignored=True), state

    def unmerged_hours() -> int:
        return len(store.rows(select(anomaly_rollup.c.bucket).where(
            anomaly_rollup.c.tenant == store.tenant, anomaly_rollup.c.grain == "hour", ~anomaly_rollup.c.merged)))

    check("deltas only: every hour read from anomalies")
    while merge_rollups(engine):
        pass
    assert unmerged_hours() == 0 and len(store.rows(select(risk_hour_totals))) >= 30
    check("merged: whole hours from risk_hour_totals")
    with engine.begin() as conn:  # reviews and a late finding on top of merged hours
        ids = conn.execute(select(anomalies.c.id).where(anomalies.c.tenant == store.tenant, anomalies.c.status == "new")
                           .order_by(anomalies.c.id).limit(40)).scalars().all()
        conn.execute(update(anomalies).where(anomalies.c.id.in_(ids[:20])).values(status="false_positive"))
        conn.execute(update(anomalies).where(anomalies.c.id.in_(ids[20:])).values(risk_score=1))
    store.anomaly("zed", 70, start + timedelta(hours=5, minutes=1))
    assert unmerged_hours() > 0
    check("changed hours read from anomalies, the rest from the totals")
    while merge_rollups(engine):
        pass
    check("merged again: the changed hours recomputed")
    svc.stub.RemoveIgnoredUser(query_pb2.RemoveIgnoredUserRequest(user="ignored-ed"))
    rows = store.rows(select(anomalies).where(anomalies.c.tenant == store.tenant))
    got = svc.stub.GetRiskTimeline(query_pb2.GetRiskTimelineRequest(range=rng, bucket_seconds=3600))
    assert [(b.anomalies, b.risk_points, b.users) for b in got.buckets] == expected(rows, start, end, timedelta(hours=1), ignored=())
    assert not store.rows(select(ignored_users).where(ignored_users.c.tenant == store.tenant))


def test_truncating_anomalies_empties_the_hour_totals(svc, store, engine):
    store.anomaly("ann", 40, NOW - timedelta(hours=3))
    while merge_rollups(engine):
        pass
    assert store.rows(select(risk_hour_totals).where(risk_hour_totals.c.tenant == store.tenant))
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE anomalies CASCADE")
    assert not store.rows(select(risk_hour_totals))


def test_a_start_on_the_clock_of_another_offset_is_not_a_utc_hour(store, engine):
    """09:00 at +05:30 is 03:30 UTC: its buckets straddle the hour totals and are counted per bucket."""
    india = timezone(timedelta(hours=5, minutes=30))
    start = (NOW.replace(minute=30, second=0, microsecond=0) - timedelta(hours=12)).astimezone(india)
    assert start.minute == 0
    for minutes in (10, 40, 70, 100, 130):
        store.anomaly(f"u{minutes}", 10, start + timedelta(minutes=minutes))
    while merge_rollups(engine):
        pass
    rows = store.rows(select(anomalies).where(anomalies.c.tenant == store.tenant))
    end = start + timedelta(hours=3)
    with engine.connect() as conn:
        got = timelines.risk_buckets(conn, store.tenant, start, end, 3600)
    assert [b[1:] for b in got] == expected(rows, start, end, timedelta(hours=1)) == [(2, 20, 2), (2, 20, 2), (1, 10, 1)]
