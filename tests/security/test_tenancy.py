"""Tenant A can read or change nothing of tenant B, through any call of any service.

Tenant B gets events, a profile, anomalies, scores, peer groups, an ignored
user, a scoring run, a case, a suppression rule and dead deliveries. Then every RPC is called as tenant A's admin (the role
that may do everything) aimed at B's objects: B's ids, B's user names, filters
naming them. Afterwards every row of B in every table is exactly as before, no
answer carries anything of B, and look-ups of B's objects are NOT_FOUND.
"""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2 as otel_common
from opentelemetry.proto.logs.v1 import logs_pb2
from sqlalchemy import insert, select

from ueba.store.anomalies import AnomalyRecord, write_anomalies
from ueba.store.schema import anomalies, deliveries, metadata, outbox, peer_groups, user_scores
from ueba.v1 import cases_pb2, common_pb2, delivery_pb2, ingest_pb2, profiles_pb2, query_pb2, scorer_pb2

from .rpcs import RPCS_BY_NAME, all_rpcs, call

NOW = datetime.now(timezone.utc).replace(microsecond=0)
B_USER = "zed-b-secret"
B_IGNORED = "zed-b-ignored"
B_PROFILE = "b-secret-profile"
A_USER = "a-user"
B_MARKERS = (B_USER, B_IGNORED, B_PROFILE, "b-secret-dept", "b-secret-reason", "b-secret-anomaly", "b-secret-group",
             "b-secret-case", "b-secret-rule", "b-secret-destination")


def ts(t: datetime):
    from google.protobuf.timestamp_pb2 import Timestamp

    out = Timestamp()
    out.FromDatetime(t)
    return out


def time_range(start: datetime, end: datetime) -> common_pb2.TimeRange:
    return common_pb2.TimeRange(start=ts(start), end=ts(end))


def b_events(user: str = B_USER) -> list[common_pb2.Event]:
    """B's events; with another user, tenant A's events that reuse B's event ids."""
    out = []
    for i in range(30):
        out.append(common_pb2.Event(
            event_id=f"b-evt-{i}", time=ts(NOW - timedelta(hours=2) + timedelta(minutes=i)), user=user,
            type=common_pb2.EVENT_TYPE_LOGON, outcome=common_pb2.OUTCOME_FAILURE if i % 3 else common_pb2.OUTCOME_SUCCESS,
            source_ip="198.51.100.7", department="b-secret-dept" if user == B_USER else "a-dept",
        ))
    return out


def failed_logins(name: str, pid: str = "") -> profiles_pb2.Profile:
    p = profiles_pb2.Profile(id=pid, name=name, kind=profiles_pb2.PROFILE_KIND_FAILED_LOGINS, risk_score=40)
    p.parameters.update({"count": 3, "interval_seconds": 3600})
    return p


class TenantB:
    def __init__(self, stack):
        self.stack = stack
        self.tenant = f"b-{uuid.uuid4().hex[:8]}"
        self.admin = stack.token(self.tenant, "admin", "b-admin")

    def seed(self) -> None:
        s, admin = self.stack, self.admin
        ack = call(s.channel("ingest"), RPCS_BY_NAME["IngestEvents"], ingest_pb2.EventBatch(batch_id="b1", events=b_events()), admin)
        assert ack.accepted == 30, ack
        profile = call(s.channel("profiles"), RPCS_BY_NAME["CreateProfile"], profiles_pb2.CreateProfileRequest(profile=failed_logins(B_PROFILE)), admin)
        self.profile_id = profile.id
        call(s.channel("query"), RPCS_BY_NAME["AddIgnoredUser"], query_pb2.AddIgnoredUserRequest(user=B_IGNORED, reason="b-secret-reason"), admin)
        run = call(s.channel("scorer"), RPCS_BY_NAME["RunScoring"],
                   scorer_pb2.RunScoringRequest(range=time_range(NOW - timedelta(hours=3), NOW.replace(minute=0, second=0))), admin)
        self.run_id = run.id
        run_uuid = str(uuid.uuid4())
        with s.engine.begin() as conn:
            write_anomalies(conn, [AnomalyRecord(
                tenant=self.tenant, user=B_USER, source="rule", profile_id=self.profile_id, profile_name=B_PROFILE,
                profile_kind="failed_logins", risk_score=80 + i, description="b-secret-anomaly", dimension="authentication",
                time=NOW - timedelta(hours=1, minutes=i), window_start=NOW - timedelta(hours=2), window_end=NOW - timedelta(hours=1),
                evidence={"event_ids": ["b-evt-1"], "count": 20}, dedup_key=f"b-{i}",
            ) for i in range(2)])
            found = conn.execute(select(anomalies.c.id, anomalies.c.incident_id).where(
                anomalies.c.tenant == self.tenant).order_by(anomalies.c.dedup_key)).all()
            self.anomaly_ids = [str(r.id) for r in found]
            self.incident_id = str(found[0].incident_id)
            conn.execute(insert(user_scores).values(
                tenant=self.tenant, user_name=B_USER, day=(NOW - timedelta(days=1)).date(), score=93.0, scored_hours=5, run_id=run_uuid,
            ))
            conn.execute(insert(peer_groups).values(
                tenant=self.tenant, id="g-b", name="b-secret-group", method="department", members=[B_USER],
            ))
        case = call(s.channel("query"), RPCS_BY_NAME["OpenCase"], cases_pb2.OpenCaseRequest(
            incident_ids=[self.incident_id], title="b-secret-case", comment="b-secret-case note"), admin)
        self.case_id = case.id
        # A rule that matches none of B's findings, so that B's rows stay as they are whoever refreshes B's risk.
        rule = call(s.channel("query"), RPCS_BY_NAME["CreateSuppressionRule"], query_pb2.CreateSuppressionRuleRequest(
            action=query_pb2.SUPPRESSION_ACTION_SUPPRESS, match=query_pb2.SuppressionMatch(profile="b-secret-rule-profile"),
            reason="b-secret-rule"), admin)
        self.rule_id = rule.rule.id

    def dead_deliveries(self) -> None:
        """Deliveries of B's outbox rows, given up, once the delivery service routed them."""
        deadline = time.monotonic() + 30
        unrouted = select(outbox.c.id).where(outbox.c.tenant == self.tenant, outbox.c.routed.is_(False))
        while True:
            with self.stack.engine.connect() as conn:
                if conn.execute(unrouted).first() is None:
                    break
            assert time.monotonic() < deadline, "the delivery service routed nothing"
            time.sleep(0.2)
        with self.stack.engine.begin() as conn:
            self.outbox_ids = list(conn.execute(select(outbox.c.id).where(outbox.c.tenant == self.tenant)).scalars())
            conn.execute(insert(deliveries), [{"outbox_id": i, "destination": "b-secret-destination", "tenant": self.tenant,
                                               "status": "dead", "last_error": "HTTP 400"} for i in self.outbox_ids])

    def snapshot(self) -> dict[str, list[str]]:
        """Every row of this tenant in every table that has a tenant column."""
        out = {}
        with self.stack.engine.connect() as conn:
            for table in metadata.sorted_tables:
                if "tenant" not in table.c:
                    continue
                rows = conn.execute(select(table).where(table.c.tenant == self.tenant)).all()
                out[table.name] = sorted(json.dumps(list(r), default=str) for r in rows)
        return out


def requests_as_a(b: TenantB) -> dict[str, object]:
    """For each RPC, a request of tenant A's aimed at B's objects."""
    hours = time_range(NOW - timedelta(hours=3), NOW)
    days = time_range(NOW - timedelta(days=3), NOW + timedelta(minutes=1))
    b_filter = query_pb2.AnomalyFilter(users=[B_USER], query=f"user:{B_USER}", include_ignored=True)
    b_user = common_pb2.EntityRef(type=common_pb2.ENTITY_TYPE_USER, name=B_USER)
    preview = profiles_pb2.PreviewProfileRequest(profile=failed_logins("a-preview"), range=hours)
    timeline = query_pb2.GetUserTimelineRequest(user=B_USER, day=ts((NOW - timedelta(hours=2)).replace(hour=0, minute=0, second=0)))
    otlp = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(log_records=[
        logs_pb2.LogRecord(
            time_unix_nano=int((NOW - timedelta(hours=2)).timestamp() * 1e9),
            body=otel_common.AnyValue(string_value="login failed"),
            attributes=[
                otel_common.KeyValue(key="user.name", value=otel_common.AnyValue(string_value=A_USER)),
                otel_common.KeyValue(key="event.name", value=otel_common.AnyValue(string_value="logon")),
                otel_common.KeyValue(key="event.outcome", value=otel_common.AnyValue(string_value="failure")),
                otel_common.KeyValue(key="log.record.uid", value=otel_common.AnyValue(string_value="b-evt-1")),
            ],
        )
    ])])])
    return {
        "IngestEvents": ingest_pb2.EventBatch(batch_id="a1", events=b_events(A_USER)),
        "StreamEvents": ingest_pb2.EventBatch(batch_id="a2", events=b_events(A_USER + "2")),
        "Export": otlp,
        "ListProfiles": profiles_pb2.ListProfilesRequest(page_size=1000),
        "GetProfile": profiles_pb2.GetProfileRequest(id=b.profile_id),
        "CreateProfile": profiles_pb2.CreateProfileRequest(profile=failed_logins(B_PROFILE)),
        "UpdateProfile": profiles_pb2.UpdateProfileRequest(profile=profiles_pb2.Profile(id=b.profile_id, risk_score=1), update_mask=["risk_score"]),
        "SetProfileEnabled": profiles_pb2.SetProfileEnabledRequest(id=b.profile_id, enabled=False),
        "DeleteProfile": profiles_pb2.DeleteProfileRequest(id=b.profile_id),
        "PreviewProfile": preview,
        "GetUserRisk": profiles_pb2.GetUserRiskRequest(user=B_USER),
        "RunScoring": scorer_pb2.RunScoringRequest(range=time_range(NOW - timedelta(hours=3), NOW.replace(minute=0, second=0)), users=[B_USER]),
        "GetScoringRun": scorer_pb2.GetScoringRunRequest(id=b.run_id),
        "ListScoringRuns": scorer_pb2.ListScoringRunsRequest(page_size=100),
        "ListPeerGroups": scorer_pb2.ListPeerGroupsRequest(page_size=100),
        "ListModels": scorer_pb2.ListModelsRequest(),
        "GetSummary": query_pb2.GetSummaryRequest(range=days, include_ignored=True, top_users=100),
        "ListAnomalies": query_pb2.ListAnomaliesRequest(filter=b_filter, page_size=100),
        "GetAnomaly": query_pb2.GetAnomalyRequest(id=b.anomaly_ids[0]),
        "ListAnomalyEvents": query_pb2.ListAnomalyEventsRequest(anomaly_id=b.anomaly_ids[0]),
        "ReviewAnomalies": query_pb2.ReviewAnomaliesRequest(action=query_pb2.REVIEW_ACTION_RESOLVE, ids=b.anomaly_ids),
        "ListUsers": query_pb2.ListUsersRequest(include_ignored=True, user_prefix="zed", page_size=100),
        "GetUser": query_pb2.GetUserRequest(user=B_USER),
        "ListUserScores": query_pb2.ListUserScoresRequest(range=days, users=[B_USER], include_ignored=True),
        "GetUserTimeline": timeline,
        "GetRiskTimeline": query_pb2.GetRiskTimelineRequest(range=days),
        "ExportAnomalies": query_pb2.ExportAnomaliesRequest(filter=query_pb2.AnomalyFilter(include_ignored=True)),
        "AddIgnoredUser": query_pb2.AddIgnoredUserRequest(user=B_USER, reason="a's own list"),
        "RemoveIgnoredUser": query_pb2.RemoveIgnoredUserRequest(user=B_IGNORED),
        "ListIgnoredUsers": query_pb2.ListIgnoredUsersRequest(page_size=100),
        "ListEntities": query_pb2.ListEntitiesRequest(page_size=100),
        "GetEntity": query_pb2.GetEntityRequest(entity=b_user),
        "GetEntityTimeline": query_pb2.GetEntityTimelineRequest(entity=b_user, range=days),
        "ListIncidents": query_pb2.ListIncidentsRequest(entity=b_user, page_size=100),
        "GetIncident": query_pb2.GetIncidentRequest(id=b.incident_id),
        "ReviewIncidents": query_pb2.ReviewIncidentsRequest(action=query_pb2.REVIEW_ACTION_RESOLVE, ids=[b.incident_id]),
        "CreateSuppressionRule": query_pb2.CreateSuppressionRuleRequest(
            action=query_pb2.SUPPRESSION_ACTION_SUPPRESS, reason="a's own rule",
            match=query_pb2.SuppressionMatch(entity=b_user, query=f"user:{B_USER}")),
        "ListSuppressionRules": query_pb2.ListSuppressionRulesRequest(include_inactive=True),
        "DeleteSuppressionRule": query_pb2.DeleteSuppressionRuleRequest(id=b.rule_id),
        "OpenCase": cases_pb2.OpenCaseRequest(incident_ids=[b.incident_id]),
        "ListCases": cases_pb2.ListCasesRequest(page_size=100),
        "GetCase": cases_pb2.GetCaseRequest(id=b.case_id),
        "CommentCase": cases_pb2.CommentCaseRequest(id=b.case_id, text="a's comment"),
        "UpdateCase": cases_pb2.UpdateCaseRequest(id=b.case_id, update_mask=["owner"], owner="a-owner"),
        "CloseCase": cases_pb2.CloseCaseRequest(id=b.case_id, reason=cases_pb2.CLOSE_REASON_FALSE_POSITIVE),
        "ListDeliveries": delivery_pb2.ListDeliveriesRequest(page_size=1000),
        "RetryDeliveries": delivery_pb2.RetryDeliveriesRequest(outbox_ids=getattr(b, "outbox_ids", [1])),
    }


# Calls whose request names B's objects by id: they must not find them.
# ListAnomalies naming B's user finds no such user in A (with hints drawn from A's names only).
NOT_FOUND = {"GetProfile", "UpdateProfile", "SetProfileEnabled", "DeleteProfile", "GetScoringRun", "GetAnomaly", "ListAnomalyEvents",
             "ReviewAnomalies", "GetUser", "GetUserTimeline", "RemoveIgnoredUser", "ListAnomalies",
             "GetEntity", "GetIncident", "ReviewIncidents", "DeleteSuppressionRule", "OpenCase", "GetCase", "CommentCase",
             "UpdateCase", "CloseCase"}
# Calls that write tenant A's own rows from a request carrying B's names: their answer echoes A's copy.
ECHOES = {"CreateProfile", "AddIgnoredUser", "RunScoring", "IngestEvents", "StreamEvents", "Export", "CreateSuppressionRule"}


@pytest.fixture(scope="module")
def tenants(stack):
    b = TenantB(stack)
    b.seed()
    b.dead_deliveries()
    a_tenant = f"a-{uuid.uuid4().hex[:8]}"
    a_admin = stack.token(a_tenant, "admin", "a-admin")
    before = b.snapshot()
    # What B owns: enough that "untouched" means something.
    for table in ("events", "profiles", "anomalies", "ignored_users", "scoring_runs", "event_scores", "user_scores",
                  "peer_groups", "users", "audit_log", "api_tokens", "incidents", "cases", "case_incidents", "case_entries",
                  "suppression_rules", "outbox", "deliveries"):
        assert before[table], f"tenant B has no {table} rows"
    return b, a_admin, before


def test_every_rpc_has_a_cross_tenant_case():
    ids = SimpleNamespace(profile_id=str(uuid.uuid4()), run_id=str(uuid.uuid4()), anomaly_ids=[str(uuid.uuid4())],
                          incident_id=str(uuid.uuid4()), case_id=str(uuid.uuid4()), rule_id=str(uuid.uuid4()))
    assert sorted(requests_as_a(ids)) == sorted(r.name for r in all_rpcs())


# Writes that leave tenant A with rows named like B's run last, so that A's reads
# before them can insist on not one of B's names.
ORDERED = sorted(all_rpcs(), key=lambda r: r.name in ("CreateProfile", "AddIgnoredUser", "RunScoring", "CreateSuppressionRule"))


@pytest.mark.parametrize("rpc", ORDERED, ids=str)
def test_tenant_a_cannot_see_or_touch_tenant_b(stack, tenants, rpc):
    b, a_admin, before = tenants
    request = requests_as_a(b)[rpc.name]
    try:
        response = call(stack.channel(rpc.service), rpc, request, a_admin)
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code, response = exc.code(), None
        assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), exc.details()
    if rpc.name in NOT_FOUND:
        if rpc.name == "RemoveIgnoredUser":
            assert code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OK)
        else:
            assert code == grpc.StatusCode.NOT_FOUND, code
    else:
        assert code == grpc.StatusCode.OK, code
    if rpc.name == "IngestEvents":
        # B's event ids are no duplicates in A: idempotency is per tenant.
        assert response.accepted == 30 and response.duplicates == 0, response
    if response is not None and rpc.name not in ECHOES:
        data = b"".join(r.SerializeToString() for r in (response if isinstance(response, list) else [response]))
        asked = request.SerializeToString()  # a name the caller sent may come back (GetUserRisk echoes the user)
        secrets = [m.encode() for m in B_MARKERS] + [i.encode() for i in (*b.anomaly_ids, b.profile_id, b.run_id, b.case_id,
                                                                          b.rule_id)]
        leaked = [m.decode() for m in secrets if m in data and m not in asked]
        assert not leaked, f"{rpc.name} answered with tenant B's {leaked}"
    assert b.snapshot() == before, f"{rpc.name} changed tenant B's rows"


def test_the_answers_are_about_tenant_a_only(stack, tenants):
    """A few answers checked for content, not only for the absence of B."""
    b, a_admin, _before = tenants
    risk = call(stack.channel("profiles"), RPCS_BY_NAME["GetUserRisk"], profiles_pb2.GetUserRiskRequest(user=B_USER), a_admin)
    assert risk.total_points == 0
    with pytest.raises(grpc.RpcError) as err:
        call(stack.channel("query"), RPCS_BY_NAME["ListAnomalies"],
             query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(users=[B_USER])), a_admin)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == f"user {B_USER!r}: no such user"  # no hint from tenant B's names
    users = call(stack.channel("query"), RPCS_BY_NAME["ListUsers"], query_pb2.ListUsersRequest(include_ignored=True), a_admin)
    assert {u.risk.user for u in users.users} <= {A_USER, A_USER + "2"}
