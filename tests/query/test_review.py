"""ReviewAnomalies: by ids and by filter, the audit trail, and the risk it takes off."""

from datetime import timedelta

import grpc
from sqlalchemy import select

from ueba.risk import user_risk
from ueba.store.schema import audit_log
from ueba.v1 import query_pb2

from .conftest import NOW, rpc_error

ACK = query_pb2.REVIEW_ACTION_ACKNOWLEDGE


def review(svc, action, ids=(), query="", comment=""):
    f = query_pb2.AnomalyFilter(query=query) if query else None
    return svc.stub.ReviewAnomalies(query_pb2.ReviewAnomaliesRequest(action=action, ids=list(ids), filter=f, comment=comment))


def test_acknowledge_by_ids_lowers_risk_and_is_audited(svc, store):
    a1 = store.anomaly("alice", 90)
    a2 = store.anomaly("alice", 60)
    store.anomaly("alice", 30)
    store.anomaly("bob", 70)
    resp = review(svc, ACK, [a1, a2], comment="seen, travel")
    assert resp.updated == 2
    (change,) = resp.risk_changes
    assert change.user == "alice"
    assert (change.points_before, change.risk_before) == user_risk([90, 60, 30])[:2]
    assert (change.points_after, change.risk_after) == user_risk([30])[:2]
    statuses = store.statuses()
    assert statuses[a1] == statuses[a2] == "acknowledged"
    got = svc.stub.GetAnomaly(query_pb2.GetAnomalyRequest(id=a1))
    assert got.reviewed_by == "anonymous" and got.review_comment == "seen, travel" and got.HasField("reviewed_at")
    audit = store.rows(select(audit_log).where(audit_log.c.tenant == store.tenant).order_by(audit_log.c.target))
    assert sorted(r.target for r in audit) == sorted([a1, a2])
    assert all(r.action == "anomaly.acknowledge" and r.actor == "anonymous" for r in audit)
    assert {r.details["from"] for r in audit} == {"new"} and {r.details["to"] for r in audit} == {"acknowledged"}
    user = svc.stub.GetUser(query_pb2.GetUserRequest(user="alice"))
    assert user.risk.total_points == 30


def test_acknowledge_all_matching_a_filter(svc, store):
    hits = [store.anomaly("alice", 75), store.anomaly("alice", 95)]
    misses = [store.anomaly("alice", 40), store.anomaly("bob", 95), store.anomaly("alice", 99, status="resolved")]
    resp = review(svc, ACK, query="user:alice risk>=high status:new")
    assert resp.updated == 2
    statuses = store.statuses()
    assert [statuses[i] for i in hits] == ["acknowledged"] * 2
    assert [statuses[i] for i in misses] == ["new", "new", "resolved"]
    assert resp.risk_changes[0].points_after == 40
    # The same again changes nothing: they are acknowledged already.
    assert review(svc, ACK, query="user:alice risk>=high status:new").updated == 0


def test_resolve_false_positive_and_reopen(svc, store):
    a = store.anomaly("carol", 80)
    b = store.anomaly("carol", 50)
    resp = review(svc, query_pb2.REVIEW_ACTION_FALSE_POSITIVE, [a])
    assert (resp.risk_changes[0].points_before, resp.risk_changes[0].points_after) == (130, 50)
    assert review(svc, query_pb2.REVIEW_ACTION_RESOLVE, [b]).risk_changes[0].points_after == 0
    resp = review(svc, query_pb2.REVIEW_ACTION_REOPEN, [a, b])
    change = resp.risk_changes[0]
    assert (change.points_before, change.points_after) == (0, 130)
    assert (change.risk_before, change.risk_after) == (0, user_risk([80, 50])[1])
    got = svc.stub.GetAnomaly(query_pb2.GetAnomalyRequest(id=a))
    assert got.status == 1 and got.reviewed_by == ""
    actions = [r.action for r in store.rows(select(audit_log.c.action).where(audit_log.c.tenant == store.tenant).order_by(audit_log.c.id))]
    assert actions == ["anomaly.false_positive", "anomaly.resolve", "anomaly.reopen", "anomaly.reopen"]


def test_anomalies_outside_the_risk_window_change_no_risk(svc, store):
    old = store.anomaly("dave", 90, NOW - timedelta(days=45))
    store.anomaly("dave", 40)
    change = review(svc, ACK, [old]).risk_changes[0]
    assert change.points_before == change.points_after == 40


def test_bad_reviews_change_nothing(svc, store):
    a = store.anomaly("erin", 60)
    err = rpc_error(review, svc, query_pb2.REVIEW_ACTION_UNSPECIFIED, [a])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "action" in err.details()
    err = rpc_error(review, svc, ACK)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "filter" in err.details()
    err = rpc_error(review, svc, ACK, [a, "00000000-0000-0000-0000-000000000001"])
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = rpc_error(review, svc, ACK, ["nope"])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "ids[0]" in err.details()
    err = rpc_error(review, svc, ACK, query="risk>=nonsense")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert store.statuses()[a] == "new"
