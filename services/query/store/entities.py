"""Entities: accounts, source addresses and hosts by risk, one entity's findings, incidents and links."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, and_, literal, or_, select, text, union_all

from services.query.store.conditions import not_ignored
from services.query.store.json_rows import anomaly_json_sql
from ueba.risk import OPEN_STATUS
from ueba.store.schema import entity_risk, user_risk

_RISK = ("points", "risk", "open_anomalies")


def _risk_rows(tenant: str, entity_type: str | None):
    """user_risk (accounts not on the ignore list) and entity_risk as one (entity_type, entity, points, risk, open_anomalies)."""
    u, e = user_risk.c, entity_risk.c
    parts = []
    if entity_type in (None, "user"):
        parts.append(
            select(literal("user").label("entity_type"), u.user_name.label("entity"), *(u[c] for c in _RISK))
            .where(u.tenant == tenant, not_ignored(tenant, u.user_name))
        )
    if entity_type != "user":
        q = select(e.entity_type, e.entity, *(e[c] for c in _RISK)).where(e.tenant == tenant)
        parts.append(q if entity_type is None else q.where(e.entity_type == entity_type))
    return (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("r")


def list_entities(
    conn: Connection, tenant: str, entity_type: str | None, min_risk: int | None, after: list[Any] | None, limit: int
) -> list[Row]:
    """Entities with open findings by risk, points descending, then type and name, past the key `after`."""
    r = _risk_rows(tenant, entity_type).c
    q = select(r.entity_type, r.entity, r.points, r.risk, r.open_anomalies)
    if min_risk is not None:
        q = q.where(r.risk >= min_risk)
    if after is not None:
        risk0, points0, type0, name0 = after
        q = q.where(or_(
            r.risk < risk0,
            and_(r.risk == risk0, r.points < points0),
            and_(r.risk == risk0, r.points == points0, r.entity_type > type0),
            and_(r.risk == risk0, r.points == points0, r.entity_type == type0, r.entity > name0),
        ))
    order = (r.risk.desc(), r.points.desc(), r.entity_type, r.entity)
    return conn.execute(q.order_by(*order).limit(limit)).all()


# Everything GetEntity shows but its risk, in one statement. An entity's incidents are those
# about it and those its findings joined (an account's linked findings join the source's).
_ENTITY_SQL = text(f"""
    WITH mine AS (
        SELECT * FROM anomalies WHERE tenant = :tenant AND entity_type = :type AND entity = :name
    ), joined AS (
        SELECT id FROM incidents WHERE tenant = :tenant AND entity_type = :type AND entity = :name
        UNION SELECT DISTINCT incident_id FROM mine WHERE incident_id IS NOT NULL
    )
    SELECT
        (SELECT min(window_start) FROM mine) AS first_finding,
        (SELECT max(time) FROM mine) AS last_finding,
        (SELECT json_agg({anomaly_json_sql()} ORDER BY anomalies.time DESC, anomalies.id DESC) FROM (
            SELECT * FROM mine ORDER BY time DESC, id DESC LIMIT :recent) anomalies) AS recent,
        (SELECT array_agg(id ORDER BY last_seen DESC) FROM incidents
         WHERE tenant = :tenant AND status = '{OPEN_STATUS}' AND id IN (SELECT id FROM joined)) AS open_incidents,
        (SELECT array_agg(DISTINCT name ORDER BY name) FROM (
            SELECT jsonb_array_elements_text(evidence -> :linked_key) AS name FROM incidents
            WHERE tenant = :tenant AND id IN (SELECT id FROM joined)
            UNION SELECT entity FROM incidents
            WHERE tenant = :tenant AND id IN (SELECT id FROM joined) AND :type = 'user' AND entity_type <> 'user'
        ) n WHERE name <> :name) AS linked,
        u.first_seen, u.last_seen
    FROM (SELECT 1) one
    LEFT JOIN users u ON :type = 'user' AND u.tenant = :tenant AND u.user_name = :name
""")


def entity_detail(conn: Connection, tenant: str, entity_type: str, name: str, recent_limit: int) -> Row:
    """One row: first and last finding, recent findings, open incident ids, linked names, and an account's sightings."""
    linked_key = "sources" if entity_type == "user" else "accounts"
    params = {"tenant": tenant, "type": entity_type, "name": name, "recent": recent_limit, "linked_key": linked_key}
    return conn.execute(_ENTITY_SQL, params).one()

