"""Entities and incidents through the real server: lists, details, timelines, reviews, anomalies by entity."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
import pytest

from ueba.risk import user_risk
from ueba.store.anomalies import AnomalyRecord, write_anomalies
from ueba.v1 import common_pb2, query_pb2

from .conftest import NOW, rpc_error

IP, HOST, USER = common_pb2.ENTITY_TYPE_IP, common_pb2.ENTITY_TYPE_HOST, common_pb2.ENTITY_TYPE_USER
T0 = NOW - timedelta(hours=3)
ADDRESS = "203.0.113.9"


def ref(entity_type, name):
    return common_pb2.EntityRef(type=entity_type, name=name)


def record(tenant, *, at, score, user="", entity_type="ip", entity=ADDRESS, kind="failed_logins", count=10, **evidence):
    start = at - timedelta(minutes=10)
    return AnomalyRecord(
        tenant=tenant, user=user, source="rule", profile_id="p", profile_name="Failed logins", profile_kind=kind,
        risk_score=score, description=f"{kind} of {entity or user}", dimension="authentication", time=at,
        window_start=start, window_end=at, dedup_key=uuid.uuid4().hex, entity_type=entity_type, entity=entity,
        evidence={"count": count, "first": start.isoformat(), "last": at.isoformat(), "event_ids": ["e1"], **evidence},
    )


@pytest.fixture
def attack(store):
    """A brute force from ADDRESS: its finding, root's linked finding and root's success, one incident; and a host."""
    link = {"type": "ip", "entity": ADDRESS}
    with store.engine.begin() as conn:
        write_anomalies(conn, [
            record(store.tenant, at=T0, score=60, count=40),
            record(store.tenant, at=T0, score=30, user="root", entity_type="user", entity="", source_entity=link),
            record(store.tenant, at=T0 + timedelta(minutes=2), score=85, user="root", entity_type="user", entity="",
                   source_entity=link, count=41),
            record(store.tenant, at=T0, score=45, entity_type="host", entity="scanner.example.net", kind="rare_event"),
        ])
    store.anomaly("root", 40, T0 - timedelta(days=2), kind="rare_event")  # stored before incidents: counts alone


def test_entities_are_listed_riskiest_first_by_type_and_in_pages(svc, attack):
    everyone = svc.stub.ListEntities(query_pb2.ListEntitiesRequest())
    listed = [(e.entity.type, e.entity.name, e.risk) for e in everyone.entities]
    assert listed == [(USER, "root", user_risk([85, 40])[1]), (IP, ADDRESS, 60), (HOST, "scanner.example.net", 45)]
    assert everyone.entities[0].open_anomalies == 2  # the incident once, the older finding alone
    ips = svc.stub.ListEntities(query_pb2.ListEntitiesRequest(type=IP))
    assert [e.entity.name for e in ips.entities] == [ADDRESS]
    first = svc.stub.ListEntities(query_pb2.ListEntitiesRequest(page_size=2))
    rest = svc.stub.ListEntities(query_pb2.ListEntitiesRequest(page_size=2, page_token=first.next_page_token))
    assert [e.entity.name for e in list(first.entities) + list(rest.entities)] == [n for _t, n, _r in listed]
    assert rest.next_page_token == ""
    err = rpc_error(svc.stub.ListEntities, query_pb2.ListEntitiesRequest(type=IP, page_token=first.next_page_token))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_address_shows_its_risk_incident_and_the_accounts_it_touched(svc, attack):
    got = svc.stub.GetEntity(query_pb2.GetEntityRequest(entity=ref(IP, ADDRESS)))
    assert (got.risk.risk, got.risk.open_anomalies) == (60, 1)
    assert list(got.linked) == ["root"]
    (incident,) = got.open_incidents
    assert (incident.entity.name, incident.anomaly_count, incident.risk_score, incident.event_count) == (ADDRESS, 3, 85, 41)
    assert [a.entity.name for a in got.recent_anomalies] == [ADDRESS]
    root = svc.stub.GetEntity(query_pb2.GetEntityRequest(entity=ref(USER, "root")))
    assert list(root.linked) == [ADDRESS] and [i.id for i in root.open_incidents] == [incident.id]
    assert rpc_error(svc.stub.GetEntity, query_pb2.GetEntityRequest(entity=ref(IP, "198.51.100.1"))).code() == grpc.StatusCode.NOT_FOUND
    bad = rpc_error(svc.stub.GetEntity, query_pb2.GetEntityRequest(entity=ref(IP, "not-an-address")))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "entity.name" in bad.details()
    untyped = rpc_error(svc.stub.GetEntity, query_pb2.GetEntityRequest(entity=common_pb2.EntityRef(name="x")))
    assert "entity.type" in untyped.details()


def test_an_entitys_timeline_counts_its_own_findings(svc, attack):
    got = svc.stub.GetEntityTimeline(query_pb2.GetEntityTimelineRequest(entity=ref(IP, ADDRESS)))
    busy = [b for b in got.buckets if b.anomalies]
    assert [(b.anomalies, b.risk_points, b.users) for b in busy] == [(1, 60, 0)]
    assert got.bucket_seconds == 3600 and len(got.buckets) == 7 * 24


def test_anomalies_by_entity_and_incident_in_filters_and_the_query_language(svc, attack):
    def ids(**f):
        return sorted(a.id for a in svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(**f))).anomalies)

    by_ip = ids(query=f"ip:{ADDRESS}")
    assert len(by_ip) == 1 and by_ip == ids(entities=[ref(IP, ADDRESS)])
    assert len(ids(query="host:Scanner.Example.NET")) == 1
    assert len(ids(query="entity:root")) == 3
    incident = svc.stub.GetEntity(query_pb2.GetEntityRequest(entity=ref(IP, ADDRESS))).open_incidents[0].id
    assert len(ids(query=f"incident:{incident}")) == 3 == len(ids(incident_ids=[incident]))
    err = rpc_error(svc.stub.ListAnomalies, query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(query="ip:nowhere")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "ip:nowhere" in err.details()


def test_incidents_are_listed_fetched_and_reviewed_with_their_findings(svc, attack):
    listed = svc.stub.ListIncidents(query_pb2.ListIncidentsRequest(order_by="risk desc")).incidents
    assert [(i.entity.name, i.risk_score) for i in listed] == [(ADDRESS, 85), ("scanner.example.net", 45)]
    mine = svc.stub.ListIncidents(query_pb2.ListIncidentsRequest(entity=ref(USER, "root"))).incidents
    assert [i.id for i in mine] == [listed[0].id]
    detail = svc.stub.GetIncident(query_pb2.GetIncidentRequest(id=listed[0].id))
    assert sorted(a.risk_score for a in detail.anomalies) == [30, 60, 85]
    assert detail.incident.evidence["accounts"] == ["root"]

    resp = svc.stub.ReviewIncidents(query_pb2.ReviewIncidentsRequest(
        action=query_pb2.REVIEW_ACTION_ACKNOWLEDGE, ids=[listed[0].id], comment="blocked at the edge"))
    assert (resp.updated, resp.anomalies_updated) == (1, 3)
    (change,) = resp.risk_changes
    assert (change.user, change.risk_before, change.risk_after) == ("root", user_risk([85, 40])[1], 40)
    after = svc.stub.GetIncident(query_pb2.GetIncidentRequest(id=listed[0].id))
    assert after.incident.status == common_pb2.ANOMALY_STATUS_ACKNOWLEDGED and after.incident.reviewed_by
    assert {a.status for a in after.anomalies} == {common_pb2.ANOMALY_STATUS_ACKNOWLEDGED}
    assert svc.stub.ListEntities(query_pb2.ListEntitiesRequest(type=IP)).entities == []

    # Reopening one finding reopens its incident; closing it again closes the incident.
    one = after.anomalies[0].id
    svc.stub.ReviewAnomalies(query_pb2.ReviewAnomaliesRequest(action=query_pb2.REVIEW_ACTION_REOPEN, ids=[one]))
    assert svc.stub.GetIncident(query_pb2.GetIncidentRequest(id=listed[0].id)).incident.status == common_pb2.ANOMALY_STATUS_NEW
    svc.stub.ReviewAnomalies(query_pb2.ReviewAnomaliesRequest(action=query_pb2.REVIEW_ACTION_RESOLVE, ids=[one]))
    assert svc.stub.GetIncident(query_pb2.GetIncidentRequest(id=listed[0].id)).incident.status == common_pb2.ANOMALY_STATUS_RESOLVED


def test_incident_requests_are_checked(svc, attack):
    cases = [
        (svc.stub.GetIncident, query_pb2.GetIncidentRequest(id="nope"), "id"),
        (svc.stub.ReviewIncidents, query_pb2.ReviewIncidentsRequest(action=query_pb2.REVIEW_ACTION_RESOLVE), "ids"),
        (svc.stub.ReviewIncidents, query_pb2.ReviewIncidentsRequest(ids=[str(uuid.uuid4())]), "action"),
        (svc.stub.ListIncidents, query_pb2.ListIncidentsRequest(order_by="size"), "order_by"),
        (svc.stub.ListIncidents, query_pb2.ListIncidentsRequest(statuses=[9]), "statuses[0]"),
    ]
    for call, request, field in cases:
        err = rpc_error(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(field), (field, err.details())
    missing = rpc_error(svc.stub.GetIncident, query_pb2.GetIncidentRequest(id=str(uuid.uuid4())))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


def test_the_entities_and_incidents_commands(svc, attack, capsys):
    import json

    from ueba.cli.main import main

    def run(*argv):
        code = main([*argv, "--address", svc.address])
        return code, capsys.readouterr().out

    code, out = run("entities", "list", "--type", "ip")
    assert code == 0 and ADDRESS in out and "root" not in out
    code, out = run("entities", "get", ADDRESS)
    assert code == 0 and f"ip:{ADDRESS}: risk 60" in out and "linked: root" in out
    code, out = run("entities", "timeline", "host:scanner.example.net", "--bucket", "1d", "-o", "csv")
    assert code == 0 and out.splitlines()[0] == "start,anomalies,risk_points,accounts,surge"
    code, out = run("incidents", "list", "--entity", "user:root", "-o", "json")
    (incident,) = json.loads(out)["incidents"]
    assert incident["entity"] == {"type": "ip", "name": ADDRESS} and incident["event_count"] == 41
    code, out = run("incidents", "get", incident["id"])
    assert code == 0 and '"accounts"' in out and out.count("Failed logins") >= 3
    code, out = run("incidents", "ack", incident["id"], "--comment", "blocked")
    assert code == 0 and "1 incidents and 3 anomalies updated" in out
    assert main(["entities", "get", "ip:", "--address", svc.address]) == 2
