"""ListAnomalyEvents through the real server: the events behind a finding, paged, per tenant."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
from sqlalchemy import select

from ueba.store.anomalies import AnomalyRecord, write_anomalies
from ueba.store.schema import anomalies
from ueba.v1 import common_pb2, query_pb2

from .conftest import NOW, rpc_error

T0 = NOW - timedelta(hours=2)
MINUTE = timedelta(minutes=1)
ADDRESS = "198.51.100.7"


def listed(svc, anomaly_id, **kw):
    return svc.stub.ListAnomalyEvents(query_pb2.ListAnomalyEventsRequest(anomaly_id=anomaly_id, **kw))


def failures_of_alice(store):
    """Three failed logons of alice in a finding's window (two cited), and events that must not show."""
    fail = {"outcome": "failure", "source_ip": ADDRESS, "destination_host": "dc01", "country": "DE", "action": "4625"}
    first = store.event("alice", T0 + MINUTE, **fail, failure_reason="bad password", attributes={"port": 22})
    second = store.event("alice", T0 + 2 * MINUTE, **fail)
    third = store.event("alice", T0 + 3 * MINUTE, **fail)  # not cited, same kind: still behind the finding
    store.event("alice", T0 + 4 * MINUTE, outcome="success")  # the success is another kind of event
    store.event("alice", T0 + 5 * MINUTE, event_type="file_download", outcome="success")
    store.event("alice", T0 + 20 * MINUTE, **fail)  # after the window
    store.event("bob", T0 + 2 * MINUTE, **fail)  # someone else
    finding = store.anomaly("alice", 60, time=T0 + 10 * MINUTE, evidence={"event_ids": [first, second], "count": 2})
    return finding, [first, second, third]


def source_finding(store, entity_type, entity, cited):
    """A failed-logins finding about a source (no account), written as the profiles service writes it; its id."""
    record = AnomalyRecord(
        tenant=store.tenant, user="", source="rule", profile_id="p", profile_name="Failed logins", profile_kind="failed_logins",
        risk_score=70, description=f"a spray from {entity}", dimension="authentication", time=T0 + 3 * MINUTE,
        window_start=T0, window_end=T0 + 3 * MINUTE, dedup_key=uuid.uuid4().hex, entity_type=entity_type, entity=entity,
        evidence={"event_ids": cited, "count": 3},
    )
    with store.engine.begin() as conn:
        write_anomalies(conn, [record])
    return store.rows(select(anomalies.c.id).where(anomalies.c.tenant == store.tenant, anomalies.c.entity == entity))[0].id


def test_the_events_of_the_finding_kind_in_its_window_oldest_first(svc):
    finding, expected = failures_of_alice(svc.store)
    got = listed(svc, finding)
    assert [e.event_id for e in got.events] == expected and got.next_page_token == ""
    first = got.events[0]
    assert first.user == "alice" and first.type == common_pb2.EVENT_TYPE_LOGON and first.outcome == common_pb2.OUTCOME_FAILURE
    assert (first.source_ip, first.destination_host, first.geo.country_code, first.action) == (ADDRESS, "dc01", "DE", "4625")
    assert first.failure_reason == "bad password" and dict(first.attributes) == {"port": "22"}
    assert first.time.ToDatetime().replace(tzinfo=NOW.tzinfo) == T0 + MINUTE


def test_pages_follow_each_other_and_a_token_belongs_to_its_anomaly(svc):
    finding, expected = failures_of_alice(svc.store)
    one = listed(svc, finding, page_size=2)
    assert [e.event_id for e in one.events] == expected[:2] and one.next_page_token
    two = listed(svc, finding, page_size=2, page_token=one.next_page_token)
    assert [e.event_id for e in two.events] == expected[2:] and two.next_page_token == ""
    other = svc.store.anomaly("alice", 40, time=T0 + 10 * MINUTE)
    err = rpc_error(listed, svc, other, page_token=one.next_page_token)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.details()


def test_a_finding_about_a_source_shows_its_events_against_every_account(svc):
    store = svc.store
    ids = [store.event(user, T0 + i * MINUTE, outcome="failure", source_ip=ADDRESS) for i, user in enumerate(["a1", "a2", "a3"], 1)]
    store.event("a4", T0 + 2 * MINUTE, outcome="failure", source_ip="192.0.2.1")  # another source
    finding = source_finding(store, "ip", ADDRESS, ids[:1])
    assert [e.event_id for e in listed(svc, finding).events] == ids


def test_a_finding_about_a_host_matches_its_name_in_any_case(svc):
    store = svc.store
    ids = [store.event(user, T0 + i * MINUTE, outcome="failure", source_host=host)
           for i, (user, host) in enumerate([("b1", "WS-07"), ("b2", "ws-07")], 1)]
    store.event("b3", T0 + 2 * MINUTE, outcome="failure", source_host="ws-08")
    finding = source_finding(store, "host", "ws-07", ids[:1])
    assert [e.event_id for e in listed(svc, finding).events] == ids


def test_a_finding_that_cites_no_event_shows_every_event_of_its_window(svc):
    store = svc.store
    ids = [store.event("carol", T0 + MINUTE), store.event("carol", T0 + 2 * MINUTE, event_type="file_upload", outcome="success")]
    finding = store.anomaly("carol", 55, time=T0 + 10 * MINUTE, evidence={})
    assert [e.event_id for e in listed(svc, finding).events] == ids


def test_unknown_malformed_and_other_tenants_anomalies(svc):
    store = svc.store
    err = rpc_error(listed, svc, str(uuid.uuid4()))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = rpc_error(listed, svc, "not-a-uuid")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("anomaly_id:")
    other = f"other-{uuid.uuid4().hex[:6]}"
    event_id = store.event("alice", T0 + MINUTE, tenant=other, outcome="failure")
    theirs = store.anomaly("alice", 60, time=T0 + 10 * MINUTE, evidence={"event_ids": [event_id]}, tenant=other)
    assert rpc_error(listed, svc, theirs).code() == grpc.StatusCode.NOT_FOUND
    # The same account in this tenant sees none of the other tenant's events.
    mine = store.anomaly("alice", 60, time=T0 + 10 * MINUTE, evidence={})
    assert listed(svc, mine).events == []


def test_a_negative_page_size_is_refused(svc):
    finding, _ = failures_of_alice(svc.store)
    assert rpc_error(listed, svc, finding, page_size=-1).code() == grpc.StatusCode.INVALID_ARGUMENT
