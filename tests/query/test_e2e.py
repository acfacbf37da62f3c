"""The query service as a process, the way a container runs it."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ueba.launcher import start_service
from ueba.v1 import query_pb2, query_pb2_grpc


@pytest.mark.e2e
def test_query_service_process_serves_and_stops_cleanly(database_url, store, tenant):
    store.anomaly("alice", 93)
    proc = start_service("query", env={
        "DATABASE_URL": database_url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1", "UEBA_TENANT": tenant,
        "UEBA_QUERY_MAINTENANCE_SECONDS": "0.2",
    })
    try:
        with grpc.insecure_channel(proc.address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="ueba.v1.QueryService"), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            summary = query_pb2_grpc.QueryServiceStub(channel).GetSummary(query_pb2.GetSummaryRequest(), timeout=10)
            assert summary.total_anomalies == 1 and summary.riskiest_users[0].user == "alice"
    finally:
        assert proc.stop() == 0


@pytest.mark.e2e
def test_bad_setting_stops_the_process_with_its_name(database_url):
    with pytest.raises(RuntimeError, match="exited with 2"):
        start_service("query", env={"DATABASE_URL": database_url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_RISK_WINDOW_DAYS": "0"})


@pytest.mark.e2e
def test_the_process_serves_cases_and_its_maintenance_applies_rules_to_new_findings(database_url, store, tenant):
    import time

    from ueba.v1 import cases_pb2, cases_pb2_grpc

    proc = start_service("query", env={
        "DATABASE_URL": database_url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1", "UEBA_TENANT": tenant,
        "UEBA_QUERY_MAINTENANCE_SECONDS": "0.2",
    })
    try:
        with grpc.insecure_channel(proc.address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="ueba.v1.CaseService"), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert cases_pb2_grpc.CaseServiceStub(channel).ListCases(cases_pb2.ListCasesRequest(), timeout=10).cases == []
            stub = query_pb2_grpc.QueryServiceStub(channel)
            stub.CreateSuppressionRule(query_pb2.CreateSuppressionRuleRequest(
                action=query_pb2.SUPPRESSION_ACTION_SUPPRESS, match=query_pb2.SuppressionMatch(query="user:scanner-svc"),
                reason="service account of the scanner"), timeout=10)
            later = store.anomaly("scanner-svc", 90)  # arrives after the rule; no call reads risk
            deadline = time.monotonic() + 20
            while store.statuses()[later] != "suppressed":
                assert time.monotonic() < deadline, "the maintenance did not apply the rule"
                time.sleep(0.2)
    finally:
        assert proc.stop() == 0
