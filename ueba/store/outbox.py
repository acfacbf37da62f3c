"""The transactional outbox: what the delivery service pushes out, written in the caller's
transaction, so a finding is announced if and only if it committed (docs/integrations.md).

The `*_row` functions make rows; `put` writes a batch of them in one statement.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, insert

from ueba import findings
from ueba.store.schema import outbox

if TYPE_CHECKING:
    from ueba.store.anomalies import AnomalyRecord

OutboxRow = dict[str, Any]


def _row(tenant: str, kind: str, action: str, entity_type: str, entity: str, score: int,
         document: dict[str, Any]) -> OutboxRow:
    return {"tenant": tenant, "event_id": document["event"]["id"], "kind": kind, "action": action,
            "entity_type": entity_type, "entity": entity, "risk_score": score, "document": document}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def anomaly_row(record: AnomalyRecord, anomaly_id: int, incident_id: str) -> OutboxRow:
    doc = findings.anomaly_document(record, anomaly_id, incident_id, str(uuid.uuid4()), _now())
    return _row(record.tenant, record.source, findings.ANOMALY_DETECTED, *record.subject, record.risk_score, doc)


def incident_row(incident: Row, action: str) -> OutboxRow:
    row = incident._asdict()
    doc = findings.incident_document(row, action, str(uuid.uuid4()), _now())
    return _row(row["tenant"], "incident", action, row["entity_type"], row["entity"], int(row["risk_score"]), doc)


def risk_crossing_row(tenant: str, entity_type: str, entity: str, previous: int, current: int) -> OutboxRow:
    doc = findings.risk_document(tenant, entity_type, entity, previous, current, str(uuid.uuid4()), _now())
    return _row(tenant, "risk", findings.RISK_RAISED, entity_type, entity, current, doc)


def put(conn: Connection, rows: list[OutboxRow]) -> None:
    if rows:
        conn.execute(insert(outbox), rows)
