"""The one writer groups findings into incidents: rule, linked, model, refreshed and concurrent findings."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from ueba.store.anomalies import AnomalyRecord, withdraw_unreviewed, write_anomalies
from ueba.store.schema import anomalies, incidents

T0 = datetime(2026, 11, 3, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def tenant() -> str:
    return f"inc-{uuid.uuid4().hex[:8]}"


def finding(tenant: str, *, at: datetime, count: int = 10, score: int = 50, user: str = "", entity_type: str = "ip",
            entity: str = "203.0.113.9", kind: str = "failed_logins", source: str = "rule", minutes: int = 10,
            key: str | None = None, **evidence) -> AnomalyRecord:
    start = at - timedelta(minutes=minutes)
    return AnomalyRecord(
        tenant=tenant, user=user, source=source, profile_id=kind, profile_name=kind.replace("_", " "), profile_kind=kind,
        risk_score=score, description="d", dimension="authentication", time=at, window_start=start, window_end=at,
        evidence={"count": count, "first": start.isoformat(), "last": at.isoformat(), "event_ids": [f"e{at:%H%M}"], **evidence},
        dedup_key=key or uuid.uuid4().hex, entity_type=entity_type, entity=entity,
    )


def write(engine, records, refresh=False) -> int:
    with engine.begin() as conn:
        return write_anomalies(conn, records, refresh_unreviewed=refresh)


def incident_rows(engine, tenant):
    with engine.connect() as conn:
        return conn.execute(select(incidents).where(incidents.c.tenant == tenant).order_by(incidents.c.first_seen)).all()


def incident_of(engine, tenant):
    with engine.connect() as conn:
        return dict(conn.execute(select(anomalies.c.dedup_key, anomalies.c.incident_id).where(anomalies.c.tenant == tenant)).all())


def test_successive_windows_of_one_activity_are_one_incident_with_the_summed_count(engine, tenant):
    write(engine, [finding(tenant, at=T0, count=10, score=50)])
    write(engine, [finding(tenant, at=T0 + timedelta(minutes=25), count=12, score=60)])  # adjacent: within an hour
    write(engine, [finding(tenant, at=T0 + timedelta(hours=5), count=10)])  # hours later: another activity
    first, second = incident_rows(engine, tenant)
    assert (first.entity_type, first.entity, first.kind) == ("ip", "203.0.113.9", "failed_logins")
    assert (first.event_count, first.anomaly_count, first.risk_score) == (22, 2, 60)
    assert (first.first_seen, first.last_seen) == (T0 - timedelta(minutes=10), T0 + timedelta(minutes=25))
    assert (second.event_count, second.anomaly_count) == (10, 1)


def test_a_refreshed_finding_grows_its_incident_to_the_true_count(engine, tenant):
    write(engine, [finding(tenant, at=T0, count=10, key="bf")])
    grown = finding(tenant, at=T0 + timedelta(minutes=16), count=286, key="bf", minutes=26)
    assert write(engine, [grown], refresh=True) == 1
    (row,) = incident_rows(engine, tenant)
    assert (row.event_count, row.anomaly_count, row.last_seen) == (286, 1, T0 + timedelta(minutes=16))
    assert row.first_seen == T0 - timedelta(minutes=10)


def test_an_accounts_linked_finding_and_its_success_join_the_sources_incident(engine, tenant):
    source = {"type": "ip", "entity": "203.0.113.9"}
    write(engine, [
        finding(tenant, at=T0, count=15, score=50, key="src"),
        finding(tenant, at=T0, count=15, score=25, user="root", entity_type="user", entity="", key="link",
                source_entity=source),
    ])
    write(engine, [finding(tenant, at=T0 + timedelta(minutes=1), count=16, score=80, user="root", entity_type="user",
                           entity="", key="success", source_entity=source)])
    (row,) = incident_rows(engine, tenant)
    assert (row.entity_type, row.entity, row.anomaly_count, row.risk_score, row.event_count) == ("ip", "203.0.113.9", 3, 80, 16)
    assert row.evidence["accounts"] == ["root"] and row.evidence["sources"] == ["203.0.113.9"]
    assert set(incident_of(engine, tenant).values()) == {row.id}


def test_a_model_anomaly_joins_the_rule_incident_its_hour_overlaps(engine, tenant):
    write(engine, [finding(tenant, at=T0 + timedelta(minutes=30), user="alice", entity_type="user", entity="", key="rule")])
    day = T0.replace(hour=0)
    model = replace(finding(tenant, at=T0, user="alice", entity_type="user", entity="", kind="login_time", source="model",
                            key="model"), window_start=day, window_end=day + timedelta(days=1), evidence={"day_score": 70})
    elsewhere = replace(model, time=T0 + timedelta(hours=6), dedup_key="model2", user="alice")
    write(engine, [model])
    write(engine, [replace(elsewhere, tenant=tenant, dedup_key="model-other", user="bob")])
    keys = incident_of(engine, tenant)
    assert keys["model"] == keys["rule"]
    assert keys["model-other"] != keys["rule"]


def test_a_finding_absorbed_by_its_dedup_key_changes_no_incident(engine, tenant):
    record = finding(tenant, at=T0, key="once")
    assert write(engine, [record]) == 1
    assert write(engine, [record]) == 0
    (row,) = incident_rows(engine, tenant)
    assert (row.anomaly_count, row.event_count) == (1, 10)


def test_withdrawn_findings_leave_their_incident_recounted_or_gone(engine, tenant):
    a = finding(tenant, at=T0, score=70, key="a", source="model", kind="authentication", user="u", entity_type="user", entity="")
    b = replace(a, time=T0 + timedelta(minutes=20), risk_score=40, dedup_key="b")
    write(engine, [a, b])
    with engine.begin() as conn:
        assert withdraw_unreviewed(conn, tenant, "model", ["a"]) == 1
    (row,) = incident_rows(engine, tenant)
    assert (row.anomaly_count, row.risk_score) == (1, 40)
    with engine.begin() as conn:
        withdraw_unreviewed(conn, tenant, "model", ["b"])
    assert incident_rows(engine, tenant) == []


def test_two_writers_at_once_never_open_two_incidents_for_one_activity(engine, tenant):
    for round_ in range(8):
        at = T0 + timedelta(days=round_)
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def writer(i: int) -> None:
            try:
                with engine.begin() as conn:
                    barrier.wait(timeout=10)
                    write_anomalies(conn, [finding(tenant, at=at + timedelta(minutes=i), entity=f"198.51.100.{round_}")])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
    rows = incident_rows(engine, tenant)
    assert len(rows) == 8 and all(r.anomaly_count == 2 for r in rows)


def test_risk_counts_an_incident_once_at_its_strongest_open_finding(engine, tenant):
    from ueba.risk import open_entity_scores, open_scores

    link = {"type": "ip", "entity": "203.0.113.9"}
    write(engine, [
        finding(tenant, at=T0, score=50),
        finding(tenant, at=T0, score=25, user="root", entity_type="user", entity="", source_entity=link),
        finding(tenant, at=T0 + timedelta(minutes=2), score=80, user="root", entity_type="user", entity="", source_entity=link),
        finding(tenant, at=T0 + timedelta(hours=9), score=40, user="root", entity_type="user", entity="", kind="rare_event"),
    ])
    with engine.connect() as conn:
        assert sorted(open_scores(conn, tenant, T0 + timedelta(days=1), 30, users=["root"])["root"]) == [40, 80]
        assert open_entity_scores(conn, tenant, T0 + timedelta(days=1), 30, "ip") == {"203.0.113.9": [50]}
