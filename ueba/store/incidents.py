"""Incidents: which open incident a finding joins, and how it grows (docs/architecture.md, "Incidents")."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, and_, delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from ueba.store.schema import anomalies, incidents

if TYPE_CHECKING:
    from ueba.store.anomalies import AnomalyRecord

OPEN = "new"
# Findings this close to an open incident of the same entity and kind continue it,
# or their own window's length when that is longer.
ADJACENT = timedelta(hours=1)
# A model anomaly is about the hour of its strongest score.
MODEL_HOURS = timedelta(hours=1)
MAX_EVENT_IDS = 50
MAX_NAMES = 100
_LOCK_CLASS = 0x0E0E0012
i = incidents.c


def lock(conn: Connection, tenant: str, entity_type: str, entity: str) -> None:
    """Serialises the writers of one entity's incidents until the transaction ends."""
    key = func.hashtext(f"{tenant}|{entity_type}:{entity}")
    conn.execute(select(func.pg_advisory_xact_lock(_LOCK_CLASS, key)))


def span(record: AnomalyRecord) -> tuple[datetime, datetime]:
    """When the activity of a finding happened: its evidence's first and last event, else its window."""
    first, last = _evidence_time(record, "first"), _evidence_time(record, "last")
    if record.source == "model":
        return first or record.time, last or record.time + MODEL_HOURS
    return first or record.window_start, last or record.time


def _evidence_time(record: AnomalyRecord, key: str) -> datetime | None:
    value = record.evidence.get(key)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def find(conn: Connection, record: AnomalyRecord) -> Row | None:
    """The open incident the record continues, or None: a new one.

    Read under the owner's advisory lock and not row-locked: the finding's own row is
    written (and locked) first, its incident after, in the same order as a review.
    """
    first, last = span(record)
    base = [i.tenant == record.tenant, i.status == OPEN]
    linked = record.evidence.get("source_entity")
    if isinstance(linked, dict) and linked.get("entity"):
        owner = (linked.get("type"), linked.get("entity"))
    else:
        owner = record.subject
        if record.source == "model":
            found = _overlapping_rule_incident(conn, record, base, first, last)
            if found is not None:
                return found
    gap = max(ADJACENT, record.window_end - record.window_start)
    q = select(incidents).where(
        *base, i.entity_type == owner[0], i.entity == owner[1], i.kind == record.profile_kind,
        i.first_seen - gap <= last, i.last_seen + gap >= first,
    )
    return conn.execute(q.order_by(i.last_seen.desc()).limit(1)).first()


def _overlapping_rule_incident(conn: Connection, record: AnomalyRecord, base, first: datetime, last: datetime) -> Row | None:
    """An open incident of another kind about the user, or that the user's findings joined, within the record's hours."""
    a = anomalies.c
    user = record.subject[1]
    member = exists(select(1).where(a.tenant == record.tenant, a.incident_id == i.id, a.entity_type == "user", a.entity == user))
    q = select(incidents).where(
        *base, i.kind != record.profile_kind, i.first_seen < last, i.last_seen >= first,
        or_(and_(i.entity_type == "user", i.entity == user), member),
    )
    return conn.execute(q.order_by(i.risk_score.desc(), i.last_seen.desc()).limit(1)).first()


def _count(record: AnomalyRecord) -> int:
    count = record.evidence.get("count")
    return count if isinstance(count, int) and count > 0 else 1


def _names(record: AnomalyRecord) -> tuple[set[str], set[str]]:
    """The accounts and the sources a finding names."""
    ev = record.evidence
    accounts = {u for u in ev.get("users", ()) if isinstance(u, str) and u}
    if record.user:
        accounts.add(record.user)
    sources = {s for s in ev.get("sources", ()) if isinstance(s, str) and s}
    for key in ("source_ip", "source_host"):
        if isinstance(ev.get(key), str) and ev[key]:
            sources.add(ev[key])
    if record.entity_type != "user":
        sources.add(record.subject[1])
    return accounts, sources


def _evidence(old: dict[str, Any], record: AnomalyRecord) -> dict[str, Any]:
    accounts, sources = _names(record)
    event_ids = list(old.get("event_ids", []))
    for e in record.evidence.get("event_ids", ()):
        if len(event_ids) >= MAX_EVENT_IDS:
            break
        if e not in event_ids:
            event_ids.append(e)
    return {
        "accounts": sorted(set(old.get("accounts", [])) | accounts)[:MAX_NAMES],
        "sources": sorted(set(old.get("sources", [])) | sources)[:MAX_NAMES],
        "event_ids": event_ids,
    }


def create(conn: Connection, incident_id: str, record: AnomalyRecord) -> Row:
    """The new incident's row."""
    first, last = span(record)
    entity_type, entity = record.subject
    return conn.execute(insert(incidents).values(
        tenant=record.tenant, id=incident_id, entity_type=entity_type, entity=entity, kind=record.profile_kind,
        dimension=record.dimension, title=f"{record.profile_name}: {entity_type} {entity}",
        first_seen=first, last_seen=last, event_count=_count(record), risk_score=record.risk_score, anomaly_count=1,
        evidence=_evidence({}, record), created_at=func.clock_timestamp(), updated_at=func.clock_timestamp(),
    ).returning(incidents)).one()


def grow(conn: Connection, incident_id: str, record: AnomalyRecord, new_finding: bool) -> Row | None:
    """Takes in a finding (or a refreshed one): times, the true event count, strongest score, evidence.

    Returns the incident's row when its strongest score rose (an escalation to announce), else None.

    A finding that starts after the incident's last event adds its count (the next
    window of the same activity); one that overlaps it counts the same events again,
    so the incident keeps the larger count.
    """
    row = conn.execute(select(incidents).where(i.id == incident_id).with_for_update()).first()
    if row is None:
        return None
    first, last = span(record)
    count = _count(record)
    grown = conn.execute(update(incidents).where(i.id == incident_id).values(
        first_seen=min(row.first_seen, first),
        last_seen=max(row.last_seen, last),
        event_count=row.event_count + count if first > row.last_seen else max(row.event_count, count),
        risk_score=max(row.risk_score, record.risk_score),
        anomaly_count=row.anomaly_count + (1 if new_finding else 0),
        evidence=_evidence(row.evidence, record),
        updated_at=func.clock_timestamp(),
    ).returning(incidents)).one()
    return grown if grown.risk_score > row.risk_score else None


def recount(conn: Connection, tenant: str, ids: set[str]) -> None:
    """After findings were withdrawn: each incident's count of findings and strongest score, or its removal."""
    if not ids:
        return
    a = anomalies.c
    left = dict(conn.execute(
        select(a.incident_id, func.json_build_array(func.count(), func.max(a.risk_score)))
        .where(a.tenant == tenant, a.incident_id.in_(ids)).group_by(a.incident_id)
    ).all())
    gone = [x for x in ids if x not in left]
    if gone:
        conn.execute(delete(incidents).where(i.tenant == tenant, i.id.in_(gone)))
    for incident_id, (n, strongest) in left.items():
        conn.execute(update(incidents).where(i.id == incident_id).values(anomaly_count=n, risk_score=strongest))
