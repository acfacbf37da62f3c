"""GetSummary: its rollup-based totals match a count of the rows, whatever the range."""

import random
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select

from services.query import risk_state
from services.query.store.risk_state import merge_rollups
from services.query.summary import split_range
from ueba.risk import risk_level, user_risk
from ueba.store.schema import anomalies, ignored_users
from ueba.v1 import common_pb2, query_pb2

from .conftest import NOW

KINDS = [("failed_logins", "authentication", "rule"), ("bulk_download", "data", "rule"), ("origin_location", "location", "model")]


def summary(svc, start=None, end=None, include_ignored=False, top=10):
    rng = None
    if start or end:
        rng = common_pb2.TimeRange()
        if start:
            rng.start.FromDatetime(start)
        if end:
            rng.end.FromDatetime(end)
    return svc.stub.GetSummary(query_pb2.GetSummaryRequest(range=rng, include_ignored=include_ignored, top_users=top))


def expected(store, start, end, include_ignored=False):
    a = anomalies.c
    ignored = {r[0] for r in store.rows(select(ignored_users.c.user_name).where(ignored_users.c.tenant == store.tenant))}
    rows = [r for r in store.rows(select(anomalies).where(a.tenant == store.tenant, a.time >= start, a.time < end))
            if include_ignored or r.user_name not in ignored]
    return {
        "total": len(rows),
        "level": Counter(risk_level(r.risk_score) for r in rows),
        "profile": Counter(r.profile_name for r in rows),
        "dimension": Counter(r.dimension for r in rows),
        "status": Counter(r.status for r in rows),
        "source": Counter(r.source for r in rows),
        "points": sum(r.risk_score for r in rows),
    }


def got(s):
    nonzero = lambda counts: Counter({c.key: c.count for c in counts if c.count})
    return {
        "total": s.total_anomalies,
        "level": nonzero(s.by_risk_level),
        "profile": nonzero(s.by_profile),
        "dimension": nonzero(s.by_dimension),
        "status": nonzero(s.by_status),
        "source": nonzero(s.by_source),
        "points": s.total_points,
    }


def test_range_splits_into_edges_hours_and_days():
    t0 = NOW.replace(year=2026, month=10, day=1, hour=22, minute=30, second=0, microsecond=0)
    raw, hours, days = split_range(t0, t0 + timedelta(days=2, hours=3))
    assert raw == [(t0, t0 + timedelta(minutes=30)), (t0 + timedelta(days=2, hours=3) - timedelta(minutes=30), t0 + timedelta(days=2, hours=3))]
    assert days == (t0.replace(day=2, hour=0, minute=0), t0.replace(day=4, hour=0, minute=0))
    assert hours == [(t0.replace(hour=23, minute=0), t0.replace(day=2, hour=0, minute=0)),
                     (t0.replace(day=4, hour=0, minute=0), t0.replace(day=4, hour=1, minute=0))]
    assert split_range(t0, t0 + timedelta(minutes=10)) == ([(t0, t0 + timedelta(minutes=10))], [], None)


def test_totals_match_the_rows_for_any_range(svc, store, engine):
    rnd = random.Random(5)
    for i in range(150):
        kind, dim, source = rnd.choice(KINDS)
        store.anomaly(f"u{rnd.randrange(6)}", rnd.randint(1, 100), NOW - timedelta(minutes=rnd.randrange(4 * 24 * 60)),
                      status=rnd.choice(["new", "new", "acknowledged", "false_positive"]), kind=kind, dimension=dim, source=source)
    with engine.begin() as conn:
        conn.execute(ignored_users.insert().values(tenant=store.tenant, user_name="u5"))

    def check_ranges():
        for _ in range(12):
            start = NOW - timedelta(minutes=rnd.randrange(5 * 24 * 60))
            end = start + timedelta(minutes=rnd.randrange(1, 4 * 24 * 60))
            for include in (False, True):
                assert got(summary(svc, start, end, include)) == expected(store, start, end, include), (start, end, include)

    check_ranges()  # deltas as the triggers wrote them
    merge_rollups(engine)
    check_ranges()  # merged
    svc.stub.ReviewAnomalies(query_pb2.ReviewAnomaliesRequest(
        action=query_pb2.REVIEW_ACTION_RESOLVE, filter=query_pb2.AnomalyFilter(query="risk>=medium user:u1 user:u2")))
    with engine.begin() as conn:
        conn.execute(delete(anomalies).where(anomalies.c.tenant == store.tenant, anomalies.c.user_name == "u3"))
    check_ranges()  # updates and deletes on top of merged rows
    merge_rollups(engine)
    check_ranges()


def test_default_range_and_zero_filled_keys(svc, store):
    store.anomaly("a", 95)
    store.anomaly("a", 10, NOW - timedelta(days=31))  # outside the default 30 days
    s = summary(svc)
    assert s.total_anomalies == 1 and s.new_anomalies == 1 and s.reviewed_anomalies == 0
    assert [(c.key, c.count) for c in s.by_risk_level] == [("critical", 1), ("high", 0), ("medium", 0), ("low", 0)]
    assert [c.key for c in s.by_status] == ["new", "acknowledged", "resolved", "false_positive", "suppressed"]
    assert abs((s.range.end.ToDatetime() - s.range.start.ToDatetime()) - timedelta(days=30)) < timedelta(seconds=1)


def test_riskiest_users_and_their_risk(svc, store, engine):
    scores = {"amy": [95, 40], "ben": [60, 60, 60], "cat": [20], "dan": [99]}
    for user, values in scores.items():
        for v in values:
            store.anomaly(user, v)
    store.anomaly("amy", 90, status="resolved")
    store.anomaly("cat", 99, NOW - timedelta(days=40))  # out of the risk window
    s = summary(svc, top=3)
    expected_order = sorted(scores, key=lambda u: (-user_risk(scores[u])[1], -user_risk(scores[u])[0], u))[:3]
    assert [u.user for u in s.riskiest_users] == expected_order
    for u in s.riskiest_users:
        points, risk, level = user_risk(scores[u.user])
        assert (u.total_points, u.risk, u.open_anomalies) == (points, risk, len(scores[u.user]))
    levels = Counter(user_risk(v)[2] for v in scores.values())
    assert [(c.key, c.count) for c in s.users_by_risk_level] == [
        (level, levels[level]) for level in ("critical", "high", "medium", "low")]
    assert sum(c.count for c in s.users_by_risk_level) == 4  # users, not their 7 open anomalies
    # A new anomaly shows at once: the read refreshes the users the trigger marked.
    store.anomaly("cat", 100)
    store.anomaly("cat", 100)  # risk 100 like amy's, more points
    assert summary(svc, top=1).riskiest_users[0].user == "cat"
    with engine.begin() as conn:
        conn.execute(ignored_users.insert().values(tenant=store.tenant, user_name="cat"))
    assert "cat" not in [u.user for u in summary(svc).riskiest_users]
    assert "cat" in [u.user for u in summary(svc, include_ignored=True).riskiest_users]


def test_users_seen_and_events(svc, store):
    hour = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    store.user("amy", first_seen=NOW - timedelta(days=10), last_seen=hour)
    store.user("old", first_seen=NOW - timedelta(days=100), last_seen=NOW - timedelta(days=60))
    store.events("amy", [hour + timedelta(minutes=m) for m in (1, 2, 61)] + [hour - timedelta(days=2)])
    s = summary(svc, hour - timedelta(hours=1), hour + timedelta(hours=2))
    assert s.users_seen == 1 and s.events == 3
    s = summary(svc, hour + timedelta(minutes=30), hour + timedelta(minutes=50))
    assert s.events == 2  # events are counted by the whole hours the range touches


def test_maintenance_merges_deltas_and_refreshes_risk(store, engine):
    from ueba.store.schema import anomaly_rollup, user_risk, user_risk_dirty

    for s in (70, 20, 90):
        store.anomaly("mia", s)
    # An hour inside the window, so a slow run cannot push it out before run_once reads it.
    stale = store.anomaly("old", 60, NOW - timedelta(days=29, hours=23))
    t = store.tenant
    rollup_rows = lambda: store.rows(select(anomaly_rollup.c.merged).where(anomaly_rollup.c.tenant == t))
    assert len(rollup_rows()) > 10 and not any(m for (m,) in rollup_rows())
    risk_state.Maintainer(engine, window_days=30, interval=1, user_mode="exact").run_once()
    assert all(m for (m,) in rollup_rows())
    assert store.rows(select(user_risk_dirty).where(user_risk_dirty.c.tenant == t)) == []
    rows = {r.user_name: r for r in store.rows(select(user_risk).where(user_risk.c.tenant == t))}
    assert (rows["mia"].points, rows["mia"].risk, rows["mia"].open_anomalies) == (180, user_risk_calc([70, 20, 90])[1], 3)
    assert stale and rows["old"].oldest_open is not None
    # Two hours later "old"'s only anomaly has left the 30-day window: its row goes.
    with engine.begin() as conn:
        risk_state.refresh(conn, t, NOW + timedelta(hours=2), 30, "exact")
    assert {r.user_name for r in store.rows(select(user_risk).where(user_risk.c.tenant == t))} == {"mia"}


def user_risk_calc(scores):
    return user_risk(scores)


def test_maintenance_wakes_when_the_next_open_finding_leaves_the_risk_window(store, engine):
    from ueba.store.schema import user_risk

    # Ages out of the 30-day window two seconds from now; the maintenance interval is a minute.
    store.anomaly("ages", 60, datetime.now(timezone.utc) - timedelta(days=30) + timedelta(seconds=2))
    store.anomaly("stays", 70)
    maintainer = risk_state.Maintainer(engine, window_days=30, interval=60, user_mode="exact")
    maintainer.run_once()
    names = lambda: {r.user_name for r in store.rows(select(user_risk).where(user_risk.c.tenant == store.tenant))}
    assert names() == {"ages", "stays"}
    deadline = time.monotonic() + 10
    while "ages" in names() and time.monotonic() < deadline:
        wait = maintainer.next_wait(False)
        assert wait <= 2.5  # not the interval: the next finding to age out decides
        time.sleep(wait)
        maintainer.run_once()
    assert names() == {"stays"}
    assert maintainer.next_wait(True) == 60
