"""The transactional outbox: what the delivery service pushes out, written in the caller's
transaction, so a finding is announced if and only if it committed (docs/integrations.md)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, insert

from ueba import findings
from ueba.store.schema import outbox

if TYPE_CHECKING:
    from ueba.store.anomalies import AnomalyRecord


def _put(conn: Connection, tenant: str, kind: str, action: str, entity_type: str, entity: str, score: int,
         document: dict[str, Any]) -> None:
    conn.execute(insert(outbox).values(
        tenant=tenant, event_id=document["event"]["id"], kind=kind, action=action, entity_type=entity_type,
        entity=entity, risk_score=score, document=document,
    ))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def add_anomaly(conn: Connection, record: AnomalyRecord, anomaly_id: int, incident_id: str) -> None:
    doc = findings.anomaly_document(record, anomaly_id, incident_id, str(uuid.uuid4()), _now())
    _put(conn, record.tenant, record.source, findings.ANOMALY_DETECTED, *record.subject, record.risk_score, doc)


def add_incident(conn: Connection, incident: Row, action: str) -> None:
    row = incident._asdict()
    doc = findings.incident_document(row, action, str(uuid.uuid4()), _now())
    _put(conn, row["tenant"], "incident", action, row["entity_type"], row["entity"], int(row["risk_score"]), doc)


def add_risk_crossing(conn: Connection, tenant: str, entity_type: str, entity: str, previous: int, current: int) -> None:
    doc = findings.risk_document(tenant, entity_type, entity, previous, current, str(uuid.uuid4()), _now())
    _put(conn, tenant, "risk", findings.RISK_RAISED, entity_type, entity, current, doc)
