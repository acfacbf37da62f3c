"""Reading incidents: a page in time or risk order, one incident with its findings, the findings of some."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, exists, literal, or_, select, text, tuple_

from services.query.store.json_rows import anomaly_json_sql
from ueba.store.schema import anomalies, incidents

i = incidents.c
a = anomalies.c
# By the names services/query/incidents.py accepts.
ORDER_COLUMNS = {"time desc": (i.last_seen, i.id), "risk desc": (i.risk_score, i.last_seen, i.id)}


@dataclass(frozen=True)
class IncidentListing:
    """Which incidents ListIncidents shows; None and empty mean any."""

    entity: tuple[str, str] | None
    statuses: tuple[str, ...]
    min_risk: int | None
    start: datetime | None
    end: datetime | None


def _conditions(tenant: str, f: IncidentListing) -> list:
    conditions = [i.tenant == tenant]
    if f.entity is not None:
        entity_type, name = f.entity
        about = and_(i.entity_type == entity_type, i.entity == name)
        joined = exists(select(1).where(a.tenant == tenant, a.incident_id == i.id, a.entity_type == entity_type,
                                        a.entity == name))
        conditions.append(or_(about, joined))
    if f.statuses:
        conditions.append(i.status.in_(f.statuses))
    if f.min_risk is not None:
        conditions.append(i.risk_score >= f.min_risk)
    if f.start is not None:
        conditions.append(i.last_seen >= f.start)
    if f.end is not None:
        conditions.append(i.first_seen < f.end)
    return conditions


def page(conn: Connection, tenant: str, f: IncidentListing, order: str, after: list[Any] | None, limit: int) -> list[Row]:
    """Incidents newest (or strongest) first, past the key `after` in that order."""
    columns = ORDER_COLUMNS[order]
    q = select(incidents).where(*_conditions(tenant, f))
    if after is not None:
        q = q.where(tuple_(*columns) < tuple_(*[literal(v, c.type) for v, c in zip(after, columns)]))
    return conn.execute(q.order_by(*(c.desc() for c in columns)).limit(limit)).all()


def by_ids(conn: Connection, tenant: str, ids: list[str]) -> list[Row]:
    if not ids:
        return []
    return conn.execute(select(incidents).where(i.tenant == tenant, i.id.in_(ids)).order_by(i.last_seen.desc())).all()


_FINDINGS_SQL = text(f"""
    SELECT json_agg({anomaly_json_sql()} ORDER BY anomalies.time, anomalies.id) FROM anomalies
    WHERE tenant = :tenant AND incident_id = :incident
""")


def findings(conn: Connection, tenant: str, incident_id: str) -> list:
    """The incident's anomalies as JSON arrays (convert.anomaly_from_json), by time."""
    return conn.execute(_FINDINGS_SQL, {"tenant": tenant, "incident": incident_id}).scalar_one() or []


def finding_ids(conn: Connection, tenant: str, ids: list[str]) -> list[str]:
    """The ids of the anomalies of the incidents `ids`."""
    return sorted(conn.execute(select(a.id).where(a.tenant == tenant, a.incident_id.in_(ids))).scalars())
