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


# --- counted reviews ---------------------------------------------------------------------------

def counted(svc, query, expected=None, dry_run=False, action=ACK):
    req = query_pb2.ReviewAnomaliesRequest(action=action, filter=query_pb2.AnomalyFilter(query=query), dry_run=dry_run)
    if expected is not None:
        req.expected_count = expected
    return svc.stub.ReviewAnomalies(req)


def test_a_dry_run_counts_and_changes_nothing_and_says_what_is_already_done(svc, store):
    store.anomaly("gus", 80)
    store.anomaly("gus", 70)
    store.anomaly("gus", 75, status="acknowledged")
    dry = counted(svc, "user:gus", dry_run=True)
    assert (dry.updated, dry.matched, [(c.key, c.count) for c in dry.unchanged]) == (2, 3, [("acknowledged", 1)])
    assert sorted(store.statuses().values()) == ["acknowledged", "new", "new"]
    assert store.rows(select(audit_log).where(audit_log.c.tenant == store.tenant)) == []
    done = counted(svc, "user:gus", expected=2)
    assert (done.updated, done.matched, [(c.key, c.count) for c in done.unchanged]) == (2, 3, [("acknowledged", 1)])
    again = counted(svc, "user:gus")
    assert (again.updated, again.matched, [(c.key, c.count) for c in again.unchanged]) == (0, 3, [("acknowledged", 3)])


def test_a_count_that_no_longer_holds_refuses_the_whole_review(svc, store):
    store.anomaly("hank", 80)
    dry = counted(svc, "user:hank", dry_run=True)
    store.anomaly("hank", 90)  # arrives between the count and the review
    err = rpc_error(counted, svc, "user:hank", expected=dry.updated)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details().startswith("expected_count: 1 anomalies were expected to change but 2 would")
    assert set(store.statuses().values()) == {"new"}  # rolled back: nothing changed
    assert store.rows(select(audit_log).where(audit_log.c.tenant == store.tenant)) == []
    assert counted(svc, "user:hank", expected=2).updated == 2


def test_the_cli_asks_before_reviewing_by_filter(svc, store, capsys, monkeypatch):
    import io

    from ueba.cli.main import main

    store.anomaly("ida", 80)
    store.anomaly("ida", 60, status="acknowledged")
    address = ("--address", svc.address)
    # No terminal and no --yes: nothing is changed, and the count is in the message.
    assert main(["anomalies", "ack", "-q", "user:ida", *address]) == 2
    err = capsys.readouterr().err
    assert "Acknowledge 1 anomalies (2 match, 1 already acknowledged)?" in err and "--yes" in err
    assert sorted(store.statuses().values()) == ["acknowledged", "new"]

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert main(["anomalies", "ack", "-q", "user:ida", *address]) == 2
    assert "nothing changed" in capsys.readouterr().err and sorted(store.statuses().values()) == ["acknowledged", "new"]
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert main(["anomalies", "ack", "-q", "user:ida", "--as", "jane", *address]) == 0
    assert "1 anomalies updated (1 already acknowledged)" in capsys.readouterr().out
    assert set(store.statuses().values()) == {"acknowledged"}
    assert {r.actor for r in store.rows(select(audit_log.c.actor).where(audit_log.c.tenant == store.tenant))} == {"jane"}
    # Nothing left to do: said without asking.
    assert main(["anomalies", "ack", "-q", "user:ida", *address]) == 0
    assert "0 anomalies updated (2 already acknowledged)" in capsys.readouterr().out
    assert main(["anomalies", "resolve", "-q", "user:ida", "--yes", *address]) == 0
    assert "2 anomalies updated" in capsys.readouterr().out
