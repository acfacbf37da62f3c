"""No call reads or changes another tenant's rows."""

import uuid
from datetime import timedelta

import grpc
import pytest

from ueba.v1 import common_pb2, query_pb2, query_pb2_grpc

from .conftest import NOW, rpc_error, start_query_server


@pytest.fixture
def other(engine):
    tenant = f"o{uuid.uuid4().hex[:10]}"
    server, address = start_query_server(engine, tenant)
    channel = grpc.insecure_channel(address)
    yield tenant, query_pb2_grpc.QueryServiceStub(channel)
    channel.close()
    server.stop(0)


def test_every_call_sees_only_its_tenant(svc, store, other):
    other_tenant, other_stub = other
    day = NOW.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    # The same user name in both tenants.
    mine = store.anomaly("alice", 50, description="mine")
    theirs = store.anomaly("alice", 99, description="theirs", tenant=other_tenant)
    store.anomaly("zed", 90, description="theirs", tenant=other_tenant)
    store.user("alice", "Mine")
    store.user("alice", "Theirs", tenant=other_tenant)
    store.user("zed", "Theirs", tenant=other_tenant)
    store.user_score("alice", day.date(), 10.0)
    store.user_score("alice", day.date(), 90.0, tenant=other_tenant)
    store.event_score("alice", day + timedelta(hours=3), "authentication", 20)
    store.event_score("alice", day + timedelta(hours=3), "authentication", 99, tenant=other_tenant)
    store.events("zed", [day + timedelta(hours=2)], tenant=other_tenant)
    other_stub.AddIgnoredUser(query_pb2.AddIgnoredUserRequest(user="alice"))
    s = svc.stub

    listed = s.ListAnomalies(query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(include_ignored=True)))
    assert [a.id for a in listed.anomalies] == [mine] and listed.total_size == 1
    assert rpc_error(s.GetAnomaly, query_pb2.GetAnomalyRequest(id=theirs)).code() == grpc.StatusCode.NOT_FOUND
    summary = s.GetSummary(query_pb2.GetSummaryRequest(include_ignored=True))
    assert summary.total_anomalies == 1 and [u.user for u in summary.riskiest_users] == ["alice"]
    assert summary.riskiest_users[0].total_points == 50 and summary.users_seen == 1 and summary.events == 0
    users = s.ListUsers(query_pb2.ListUsersRequest(include_ignored=True)).users
    assert [(u.risk.user, u.department) for u in users] == [("alice", "Mine")]
    alice = s.GetUser(query_pb2.GetUserRequest(user="alice"))
    assert alice.department == "Mine" and alice.risk.total_points == 50 and not alice.ignored
    assert rpc_error(s.GetUser, query_pb2.GetUserRequest(user="zed")).code() == grpc.StatusCode.NOT_FOUND
    assert [x.anomaly_score for x in s.ListUserScores(query_pb2.ListUserScoresRequest()).scores] == [10.0]
    req = query_pb2.GetUserTimelineRequest(user="alice")
    req.day.FromDatetime(day)
    assert [c.event_score for h in s.GetUserTimeline(req).hours for c in h.cards] == [20]
    rng = common_pb2.TimeRange()
    rng.start.FromDatetime(NOW - timedelta(days=1))
    rng.end.FromDatetime(NOW)
    assert sum(b.anomalies for b in s.GetRiskTimeline(query_pb2.GetRiskTimelineRequest(range=rng)).buckets) == 1
    csv_rows = b"".join(c.data for c in s.ExportAnomalies(query_pb2.ExportAnomaliesRequest())).decode().splitlines()
    assert len(csv_rows) == 2 and "mine" in csv_rows[1]
    assert s.ListIgnoredUsers(query_pb2.ListIgnoredUsersRequest()).users == []
    assert rpc_error(s.RemoveIgnoredUser, query_pb2.RemoveIgnoredUserRequest(user="alice")).code() == grpc.StatusCode.NOT_FOUND
    # Reviews: by ids of another tenant's anomaly, and by a filter matching everything.
    ack = query_pb2.REVIEW_ACTION_ACKNOWLEDGE
    err = rpc_error(s.ReviewAnomalies, query_pb2.ReviewAnomaliesRequest(action=ack, ids=[theirs]))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    resp = s.ReviewAnomalies(query_pb2.ReviewAnomaliesRequest(action=ack, filter=query_pb2.AnomalyFilter(query="status:new", include_ignored=True)))
    assert resp.updated == 1
    theirs_now = other_stub.ListAnomalies(query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(include_ignored=True)))
    assert {a.status for a in theirs_now.anomalies} == {common_pb2.ANOMALY_STATUS_NEW} and len(theirs_now.anomalies) == 2
    assert other_stub.GetSummary(query_pb2.GetSummaryRequest()).events == 1
