"""The one JSON document of every finding pushed out: rule and model anomalies, incident changes
and risk level crossings (schema and field meanings: docs/integrations.md).

ECS field names where ECS has one (`@timestamp`, `event.*`, `rule.*`, `user.name`, `source.ip`,
`organization.id`, `message`); what ECS has no name for is under `ueba.*`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ueba.risk import risk_level

if TYPE_CHECKING:
    from ueba.store.anomalies import AnomalyRecord

SCHEMA_VERSION = "1"
KINDS = ("rule", "model", "incident", "risk")
ANOMALY_DETECTED = "anomaly-detected"
INCIDENT_OPENED = "incident-opened"
INCIDENT_ESCALATED = "incident-escalated"
INCIDENT_REVIEWED = "incident-reviewed"
RISK_RAISED = "risk-level-raised"


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _subject(entity_type: str, entity: str) -> dict[str, Any]:
    """Whom a document is about, under the ECS name of its type."""
    if entity_type == "user":
        return {"user": {"name": entity}}
    if entity_type == "ip":
        return {"source": {"ip": entity}}
    return {"source": {"address": entity, "domain": entity}}


def _event(event_id: str, kind: str, action: str, score: int, created: datetime) -> dict[str, Any]:
    return {
        "id": event_id, "kind": "alert", "module": "ueba", "dataset": f"ueba.{kind}", "action": action,
        "severity": score, "risk_score": float(score), "created": iso(created),
    }


def anomaly_document(record: AnomalyRecord, anomaly_id: int, incident_id: str, event_id: str,
                     created: datetime) -> dict[str, Any]:
    entity_type, entity = record.subject
    doc: dict[str, Any] = {
        "@timestamp": iso(record.time),
        "message": record.description,
        "event": {**_event(event_id, record.source, ANOMALY_DETECTED, record.risk_score, created),
                  "start": iso(record.window_start), "end": iso(record.window_end), "reason": record.description},
        "rule": {"id": record.profile_id, "name": record.profile_name, "category": record.profile_kind,
                 "ruleset": record.source},
        "organization": {"id": record.tenant},
        **_subject(entity_type, entity),
        "ueba": {
            "schema": SCHEMA_VERSION, "kind": record.source, "tenant": record.tenant,
            "entity": {"type": entity_type, "name": entity}, "risk_level": risk_level(record.risk_score),
            "anomaly_id": anomaly_id, "incident_id": incident_id, "dimension": record.dimension,
            "evidence": record.evidence,
        },
    }
    if record.user and entity_type != "user":  # a source's finding that also names one account
        doc["user"] = {"name": record.user}
    return doc


def incident_document(incident: dict[str, Any], action: str, event_id: str, created: datetime) -> dict[str, Any]:
    """`incident`: the row of `incidents` after the change, as a mapping."""
    score = int(incident["risk_score"])
    return {
        "@timestamp": iso(incident["last_seen"]),
        "message": incident["title"],
        "event": {**_event(event_id, "incident", action, score, created),
                  "start": iso(incident["first_seen"]), "end": iso(incident["last_seen"])},
        "rule": {"category": incident["kind"]},
        "organization": {"id": incident["tenant"]},
        **_subject(incident["entity_type"], incident["entity"]),
        "ueba": {
            "schema": SCHEMA_VERSION, "kind": "incident", "tenant": incident["tenant"],
            "entity": {"type": incident["entity_type"], "name": incident["entity"]}, "risk_level": risk_level(score),
            "incident_id": str(incident["id"]), "dimension": incident["dimension"],
            "anomaly_count": incident["anomaly_count"], "event_count": incident["event_count"],
            "status": incident["status"], "evidence": incident["evidence"],
        },
    }


def risk_document(tenant: str, entity_type: str, entity: str, previous: int, current: int, event_id: str,
                  created: datetime) -> dict[str, Any]:
    before, after = risk_level(previous), risk_level(current)
    return {
        "@timestamp": iso(created),
        "message": f"{entity_type} {entity} rose from {before} ({previous}) to {after} risk ({current})",
        "event": _event(event_id, "risk", RISK_RAISED, current, created),
        "organization": {"id": tenant},
        **_subject(entity_type, entity),
        "ueba": {
            "schema": SCHEMA_VERSION, "kind": "risk", "tenant": tenant,
            "entity": {"type": entity_type, "name": entity}, "risk_level": after,
            "risk": {"previous": previous, "previous_level": before, "current": current, "level": after},
        },
    }
