"""ListUsers, GetUser, ListUserScores, the ignore list and the timelines."""

import random
from datetime import timedelta

import grpc
import pytest
from sqlalchemy import select

from services.query.timelines import display_threshold, surge_threshold
from ueba.risk import user_risk
from ueba.store.schema import audit_log
from ueba.v1 import common_pb2, query_pb2

from .conftest import NOW, rpc_error

DAY0 = NOW.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


def users_list(svc, **kw):
    out, token = [], ""
    while True:
        resp = svc.stub.ListUsers(query_pb2.ListUsersRequest(page_token=token, **kw))
        out.extend(resp.users)
        token = resp.next_page_token
        if not token:
            return out


@pytest.fixture
def people(store):
    store.peer_group("g1", "finance-peers")
    store.user("amy", "Finance", peer_group_id="g1", first_seen=NOW - timedelta(days=3))
    store.user("ben", "Sales", first_seen=NOW - timedelta(days=60))
    store.user("bea", "Sales", first_seen=NOW - timedelta(days=60))
    store.user("quiet", "Sales")
    for s in (95, 40):
        store.anomaly("amy", s)
    for s in (60, 60):
        store.anomaly("ben", s)
    store.anomaly("bea", 60, kind="bulk_download", dimension="data")
    store.anomaly("ghost", 30)  # anomalies but no users row yet
    store.user_score("ben", DAY0.date() - timedelta(days=1), 12.0)
    store.user_score("ben", DAY0.date(), 33.5, learning=True)


def test_list_users_by_risk_with_filters_and_pages(svc, people):
    listed = users_list(svc, page_size=2)
    assert [u.risk.user for u in listed] == ["amy", "ben", "bea", "ghost", "quiet"]
    amy, ben = listed[0], listed[1]
    assert (amy.risk.total_points, amy.risk.risk) == user_risk([95, 40])[:2]
    assert amy.risk.risk_level == common_pb2.RISK_LEVEL_CRITICAL and amy.risk.open_anomalies == 2
    assert amy.peer_group == "finance-peers" and amy.department == "Finance"
    assert amy.learning  # no scores yet, seen for 3 days
    assert ben.learning and ben.last_anomaly_score == 33.5  # the scorer's latest verdict
    assert not listed[2].learning and listed[4].risk.risk == 0
    assert [u.risk.user for u in users_list(svc, min_risk_level=common_pb2.RISK_LEVEL_HIGH)] == ["amy", "ben"]
    assert [u.risk.user for u in users_list(svc, department="sales")] == ["ben", "bea", "quiet"]
    assert [u.risk.user for u in users_list(svc, peer_group="finance-peers")] == ["amy"]
    assert [u.risk.user for u in users_list(svc, user_prefix="B")] == ["ben", "bea"]
    assert [u.risk.user for u in users_list(svc, user_prefix="%")] == []


def test_get_user(svc, store, people):
    u = svc.stub.GetUser(query_pb2.GetUserRequest(user="CORP\\Amy"))
    assert u.risk.user == "amy" and u.risk.total_points == 135 and u.risk.open_anomalies == 2
    assert [(c.key, c.count) for c in u.open_by_profile] == [("failed logins", 2)]
    assert u.learning and u.baseline_days == 3 and u.peer_group == "finance-peers" and u.department == "Finance"
    assert not u.ignored and len(u.recent_anomalies) == 2 and u.HasField("first_seen")
    ben = svc.stub.GetUser(query_pb2.GetUserRequest(user="ben", recent_limit=1))
    assert ben.learning and ben.baseline_days == 60 and ben.last_anomaly_score == 33.5 and len(ben.recent_anomalies) == 1
    assert svc.stub.GetUser(query_pb2.GetUserRequest(user="ghost")).risk.total_points == 30
    assert rpc_error(svc.stub.GetUser, query_pb2.GetUserRequest(user="nobody")).code() == grpc.StatusCode.NOT_FOUND
    assert rpc_error(svc.stub.GetUser, query_pb2.GetUserRequest(user="")).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_user_scores_per_day(svc, store, people):
    store.user_score("amy", DAY0.date(), 71.0)
    rng = common_pb2.TimeRange()
    rng.start.FromDatetime(DAY0)
    resp = svc.stub.ListUserScores(query_pb2.ListUserScoresRequest(range=rng))
    assert [(s.user, s.anomaly_score, s.learning) for s in resp.scores] == [("amy", 71.0, False), ("ben", 33.5, True)]
    rng.start.FromDatetime(DAY0 - timedelta(days=1))
    first = svc.stub.ListUserScores(query_pb2.ListUserScoresRequest(range=rng, users=["ben"], page_size=1))
    second = svc.stub.ListUserScores(query_pb2.ListUserScoresRequest(range=rng, users=["ben"], page_size=1, page_token=first.next_page_token))
    assert [s.anomaly_score for s in [*first.scores, *second.scores]] == [12.0, 33.5] and not second.next_page_token
    high = svc.stub.ListUserScores(query_pb2.ListUserScoresRequest(range=rng, min_score=50))
    assert [s.user for s in high.scores] == ["amy"]


def test_ignore_list_hides_users_unless_asked(svc, store, people):
    added = svc.stub.AddIgnoredUser(query_pb2.AddIgnoredUserRequest(user="Amy", reason="service account"))
    assert added.user == "amy" and added.added_by == "anonymous" and added.reason == "service account"
    assert [u.user for u in svc.stub.ListIgnoredUsers(query_pb2.ListIgnoredUsersRequest()).users] == ["amy"]
    assert "amy" not in [u.risk.user for u in users_list(svc)]
    assert "amy" in [u.risk.user for u in users_list(svc, include_ignored=True)]
    summary = svc.stub.GetSummary(query_pb2.GetSummaryRequest())
    assert "amy" not in [u.user for u in summary.riskiest_users] and summary.total_anomalies == 4
    assert svc.stub.GetSummary(query_pb2.GetSummaryRequest(include_ignored=True)).total_anomalies == 6
    listed = svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest())
    assert "amy" not in {a.user for a in listed.anomalies}
    named = svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(query="user:amy")))
    assert len(named.anomalies) == 2  # naming the user is asking for them
    assert svc.stub.GetUser(query_pb2.GetUserRequest(user="amy")).ignored
    svc.stub.RemoveIgnoredUser(query_pb2.RemoveIgnoredUserRequest(user="amy"))
    assert svc.stub.ListIgnoredUsers(query_pb2.ListIgnoredUsersRequest()).users == []
    err = rpc_error(svc.stub.RemoveIgnoredUser, query_pb2.RemoveIgnoredUserRequest(user="amy"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    actions = [r.action for r in store.rows(select(audit_log.c.action).where(audit_log.c.tenant == store.tenant).order_by(audit_log.c.id))]
    assert actions == ["ignore.add", "ignore.remove"]


def test_ignore_list_pages(svc):
    for name in ("c", "a", "b"):
        svc.stub.AddIgnoredUser(query_pb2.AddIgnoredUserRequest(user=name))
    first = svc.stub.ListIgnoredUsers(query_pb2.ListIgnoredUsersRequest(page_size=2))
    rest = svc.stub.ListIgnoredUsers(query_pb2.ListIgnoredUsersRequest(page_size=2, page_token=first.next_page_token))
    assert [u.user for u in first.users] + [u.user for u in rest.users] == ["a", "b", "c"]


def test_display_and_surge_thresholds():
    assert display_threshold([]) == 50.0
    assert display_threshold([10, 20, 30]) == 50.0
    assert display_threshold([90]) == 90.0
    assert display_threshold(list(range(1, 101))) == pytest.approx(90.1)
    assert surge_threshold([0] * 20) == 3.0
    assert surge_threshold([10, 12, 11, 9, 10]) == pytest.approx(10 + 3 * 1.4826)


def test_user_timeline(svc, store, people):
    feats = [{"name": "failures", "expected": 0.5, "observed": 12, "share": 0.8}, {"name": "new_hosts", "expected": 0, "observed": 1, "share": 0.2}]
    for h, score in enumerate([5, 10, 20, 30, 40, 60, 70, 80, 85, 95]):
        store.event_score("amy", DAY0 + timedelta(hours=h), "authentication", score, feats if score == 95 else None)
    store.event_score("amy", DAY0 + timedelta(hours=9), "login_time", 55, learning=True)
    store.events("amy", [DAY0 + timedelta(hours=9, minutes=m) for m in range(5)] + [DAY0 + timedelta(hours=23)])
    store.user_score("amy", DAY0.date(), 64.0)
    store.anomaly("amy", 88, DAY0 + timedelta(hours=9, minutes=30))
    req = query_pb2.GetUserTimelineRequest(user="amy")
    req.day.FromDatetime(DAY0 + timedelta(hours=13))  # any time in the day names the day
    tl = svc.stub.GetUserTimeline(req)
    assert tl.user == "amy" and tl.anomaly_score == 64.0 and len(tl.hours) == 24
    assert tl.display_threshold == pytest.approx(display_threshold([5, 10, 20, 30, 40, 60, 70, 80, 85, 95, 55]))
    nine = tl.hours[9]
    assert nine.events == 5 and tl.hours[23].events == 1 and tl.hours[12].cards == []
    assert [(c.model, c.event_score, c.above_threshold, c.learning) for c in nine.cards] == [
        ("authentication", 95, True, False), ("login_time", 55, False, True)]
    assert [(f.name, f.expected, f.observed, f.share) for f in nine.cards[0].features] == [
        ("failures", 0.5, 12.0, 0.8), ("new_hosts", 0.0, 1.0, 0.2)]
    assert not any(c.above_threshold for h in tl.hours[:8] for c in h.cards)
    assert [a.risk_score for a in tl.anomalies] == [88]
    req.user = "nobody"
    assert rpc_error(svc.stub.GetUserTimeline, req).code() == grpc.StatusCode.NOT_FOUND
    assert rpc_error(svc.stub.GetUserTimeline, query_pb2.GetUserTimelineRequest(user="amy")).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_risk_timeline_marks_surges(svc, store):
    start = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=24)
    for h in range(24):
        store.anomaly(f"u{h}", 10, start + timedelta(hours=h, minutes=5))
    for i in range(6):
        store.anomaly(f"s{i}", 80, start + timedelta(hours=17, minutes=i))
    store.anomaly("fp", 100, start + timedelta(hours=3), status="false_positive")
    rng = common_pb2.TimeRange()
    rng.start.FromDatetime(start)
    rng.end.FromDatetime(start + timedelta(hours=24))
    tl = svc.stub.GetRiskTimeline(query_pb2.GetRiskTimelineRequest(range=rng))
    assert len(tl.buckets) == 24 and tl.bucket_seconds == 3600
    assert [b.risk_points for b in tl.buckets][:4] == [10, 10, 10, 10]
    surges = [i for i, b in enumerate(tl.buckets) if b.surge]
    assert surges == [17]
    assert (tl.buckets[17].anomalies, tl.buckets[17].risk_points, tl.buckets[17].users) == (7, 490, 7)
    six = svc.stub.GetRiskTimeline(query_pb2.GetRiskTimelineRequest(range=rng, bucket_seconds=6 * 3600))
    assert [b.anomalies for b in six.buckets] == [6, 6, 12, 6]
    err = rpc_error(svc.stub.GetRiskTimeline, query_pb2.GetRiskTimelineRequest(range=rng, bucket_seconds=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "bucket_seconds" in err.details()


def test_risk_timeline_buckets_are_the_sums_of_their_anomalies(svc, store):
    """Against a count made here: partial last bucket, accounts counted once, findings about a source
    counted without an account, false positives and ignored accounts left out."""
    rng_ = random.Random(7)
    start = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=30)
    end = start + timedelta(hours=12, minutes=40)  # the last 4-hour bucket is cut at `end`
    kept = []
    for _ in range(120):
        user = rng_.choice(["ann", "bo", "cy", "di", "ignored-ed", ""])
        at = start + timedelta(minutes=rng_.randrange(-60, 14 * 60))
        score, status = rng_.randrange(1, 101), rng_.choice(["new", "new", "acknowledged", "false_positive"])
        store.anomaly(user, score, at, status=status)
        if start <= at < end and status != "false_positive" and user != "ignored-ed":
            kept.append((at, user, score))
    svc.stub.AddIgnoredUser(query_pb2.AddIgnoredUserRequest(user="ignored-ed"))
    rng = common_pb2.TimeRange()
    rng.start.FromDatetime(start)
    rng.end.FromDatetime(end)
    got = svc.stub.GetRiskTimeline(query_pb2.GetRiskTimelineRequest(range=rng, bucket_seconds=4 * 3600))
    expected = []
    for i in range(4):
        lo, hi = start + timedelta(hours=4 * i), min(end, start + timedelta(hours=4 * (i + 1)))
        inside = [(u, s) for at, u, s in kept if lo <= at < hi]
        expected.append((len(inside), sum(s for _u, s in inside), len({u for u, _s in inside if u})))
    assert [(b.anomalies, b.risk_points, b.users) for b in got.buckets] == expected
    assert sum(n for n, _p, _u in expected) > 50  # the draw put anomalies in every bucket worth checking
