"""The outbox is written in the finding's own transaction: findings, incident changes and risk
level crossings, one crossing per rise in level, not one per finding."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from ueba.store.anomalies import AnomalyRecord, write_anomalies
from ueba.store.schema import anomalies, outbox

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def tenant() -> str:
    return f"out-{uuid.uuid4().hex[:8]}"


def finding(tenant: str, *, user: str = "alice", score: int = 50, kind: str = "failed_logins", source: str = "rule",
            hours_ago: float = 1, key: str | None = None, entity_type: str = "user", entity: str = "") -> AnomalyRecord:
    at = NOW - timedelta(hours=hours_ago)
    return AnomalyRecord(
        tenant=tenant, user=user, source=source, profile_id=kind, profile_name=kind.replace("_", " "), profile_kind=kind,
        risk_score=score, description=f"{kind} of {user or entity}", dimension="authentication", time=at,
        window_start=at - timedelta(minutes=10), window_end=at, evidence={"count": 5},
        dedup_key=key or uuid.uuid4().hex, entity_type=entity_type, entity=entity,
    )


def write(engine, *records: AnomalyRecord, refresh: bool = False) -> int:
    with engine.begin() as conn:
        return write_anomalies(conn, list(records), refresh_unreviewed=refresh)


def rows(engine, tenant: str) -> list:
    with engine.connect() as conn:
        return conn.execute(select(outbox).where(outbox.c.tenant == tenant).order_by(outbox.c.id)).all()


def crossings(engine, tenant: str) -> list[tuple[str, str]]:
    return [(r.document["ueba"]["risk"]["previous_level"], r.document["ueba"]["risk"]["level"])
            for r in rows(engine, tenant) if r.kind == "risk"]


def test_a_new_finding_announces_itself_and_its_incident_in_its_own_transaction(engine, tenant):
    write(engine, finding(tenant, score=50))
    found = rows(engine, tenant)
    assert [(r.kind, r.action) for r in found] == [("rule", "anomaly-detected"), ("incident", "incident-opened"),
                                                   ("risk", "risk-level-raised")]
    anomaly, incident, _ = found
    with engine.connect() as conn:
        stored = conn.execute(select(anomalies).where(anomalies.c.tenant == tenant)).one()
    doc = anomaly.document
    assert doc["event"]["id"] == str(anomaly.event_id)
    assert doc["user"] == {"name": "alice"} and doc["organization"] == {"id": tenant}
    assert doc["rule"]["id"] == "failed_logins" and doc["event"]["risk_score"] == 50.0
    assert doc["ueba"]["anomaly_id"] == stored.id and doc["ueba"]["incident_id"] == str(stored.incident_id)
    assert incident.document["ueba"]["incident_id"] == str(stored.incident_id)


def test_a_rolled_back_finding_is_never_announced(engine, tenant):
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            write_anomalies(conn, [finding(tenant)])
            raise RuntimeError("the writer's transaction fails after the write")
    assert rows(engine, tenant) == []


def test_a_repeat_is_not_announced_and_a_stronger_refresh_escalates_its_incident(engine, tenant):
    write(engine, finding(tenant, key="k", score=30))
    write(engine, finding(tenant, key="k", score=30))  # absorbed by the dedup key
    write(engine, finding(tenant, key="k", score=35), refresh=True)  # the brute force goes on
    actions = [r.action for r in rows(engine, tenant)]
    assert actions == ["anomaly-detected", "incident-opened", "incident-escalated"]
    assert rows(engine, tenant)[-1].document["ueba"]["incident_id"]


def test_each_rise_in_risk_level_is_announced_once_not_once_per_finding(engine, tenant):
    write(engine, finding(tenant, score=50))  # low -> medium
    write(engine, finding(tenant, score=75, kind="impossible_travel"))  # -> high (risk 84)
    write(engine, finding(tenant, score=60, kind="rare_application"))  # more findings, still high
    write(engine, finding(tenant, score=55, kind="bulk_download"))
    assert crossings(engine, tenant) == [("low", "medium"), ("medium", "high")]
    write(engine, finding(tenant, score=95, kind="privilege_use"))  # -> critical
    assert crossings(engine, tenant)[-1] == ("high", "critical")
    risk = [r for r in rows(engine, tenant) if r.kind == "risk"][-1]
    assert risk.document["user"] == {"name": "alice"} and risk.risk_score >= 90


def test_a_level_lowered_by_reviews_is_announced_again_when_it_rises_again(engine, tenant):
    write(engine, finding(tenant, score=80))
    with engine.begin() as conn:  # an analyst resolves it: the risk falls to low
        conn.execute(update(anomalies).where(anomalies.c.tenant == tenant).values(status="resolved"))
    write(engine, finding(tenant, score=80, kind="impossible_travel"))
    assert crossings(engine, tenant) == [("low", "high"), ("low", "high")]


def test_findings_outside_the_risk_window_raise_no_level(engine, tenant):
    write(engine, finding(tenant, score=90, hours_ago=24 * 40))
    assert crossings(engine, tenant) == []


def test_a_source_and_the_account_it_targets_rise_each_on_its_own(engine, tenant):
    source = finding(tenant, user="", entity_type="ip", entity="203.0.113.7", score=72)
    write(engine, source, finding(tenant, user="bob", score=40))
    assert sorted((r.entity_type, r.entity, r.document["ueba"]["risk"]["level"])
                  for r in rows(engine, tenant) if r.kind == "risk") == [("ip", "203.0.113.7", "high"),
                                                                       ("user", "bob", "medium")]
    ip_doc = next(r.document for r in rows(engine, tenant) if r.kind == "rule" and r.entity_type == "ip")
    assert ip_doc["source"] == {"ip": "203.0.113.7"} and "user" not in ip_doc
