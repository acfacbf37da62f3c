"""Suppression rules: their rows and audit entries, the findings a rule matches, and the down-weighting write."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, cast, func, insert, literal, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import INET

from ueba.risk import OPEN_STATUS
from ueba.store.schema import anomalies, audit_log, suppression_rules

a = anomalies.c
s = suppression_rules.c


def create(conn: Connection, tenant: str, values: dict[str, Any], actor: str, now: datetime) -> Row:
    row = conn.execute(
        insert(suppression_rules).values(tenant=tenant, created_by=actor, created_at=now, **values).returning(suppression_rules)
    ).one()
    _audit(conn, tenant, now, actor, "suppression.create", row)
    return row


def delete(conn: Connection, tenant: str, rule_id: str, actor: str, now: datetime) -> Row | None:
    """Marks the rule deleted (kept for the audit trail); None when the tenant has no such live rule."""
    row = conn.execute(
        update(suppression_rules).where(s.tenant == tenant, s.id == rule_id, s.deleted_at.is_(None))
        .values(deleted_at=now, deleted_by=actor).returning(suppression_rules)
    ).first()
    if row is not None:
        _audit(conn, tenant, now, actor, "suppression.delete", row)
    return row


def _audit(conn: Connection, tenant: str, now: datetime, actor: str, action: str, row: Row) -> None:
    details = {k: v for k, v in row._mapping.items() if k in ("action", "weight", "entity_type", "entity", "profile",
                                                             "cidr", "query", "reason") and v is not None}
    if row.expires_at is not None:
        details["expires_at"] = row.expires_at.isoformat()
    conn.execute(insert(audit_log).values(tenant=tenant, at=now, actor=actor, action=action, target=row.id, details=details))


def active(conn: Connection, tenant: str, now: datetime) -> list[Row]:
    """The tenant's rules in force, oldest first."""
    q = select(suppression_rules).where(
        s.tenant == tenant, s.deleted_at.is_(None), or_(s.expires_at.is_(None), s.expires_at > now)
    )
    return conn.execute(q.order_by(s.created_at, s.id)).all()


def page(conn: Connection, tenant: str, include_inactive: bool, now: datetime, after: list | None, limit: int) -> list[Row]:
    """Rules newest first with the number of findings each holds now, past the key (created_at, id) `after`."""
    held = select(func.count()).where(a.tenant == tenant, a.suppressed_by == s.id).scalar_subquery()
    q = select(suppression_rules, held.label("applied")).where(s.tenant == tenant)
    if not include_inactive:
        q = q.where(s.deleted_at.is_(None), or_(s.expires_at.is_(None), s.expires_at > now))
    if after is not None:
        q = q.where(tuple_(s.created_at, s.id) < tuple_(literal(after[0], s.created_at.type), literal(after[1], s.id.type)))
    return conn.execute(q.order_by(s.created_at.desc(), s.id.desc()).limit(limit)).all()


def in_range(cidr: str):
    """The finding's source address is in `cidr`: an address entity, or the evidence's source_ip."""
    network = cast(literal(cidr), INET)
    return or_(
        (a.entity_type == "ip") & func.ueba_try_inet(a.entity).op("<<=")(network),
        func.ueba_try_inet(a.evidence["source_ip"].astext).op("<<=")(network),
    )


def open_matches(conn: Connection, conditions: list) -> list[str]:
    """The ids of the open findings no rule has changed yet that meet `conditions`."""
    q = select(a.id).where(*conditions, a.status == OPEN_STATUS, a.suppressed_by.is_(None)).order_by(a.id)
    return list(conn.execute(q).scalars())


def down_weight(conn: Connection, tenant: str, ids: list[str], rule_id: str, weight: float) -> list[Row]:
    """Scales the open findings `ids` no rule has changed yet by `weight` (at least 1), keeping their score;
    (id, user_name, risk_score, time, incident_id, old_status) of each, as a review's write returns them."""
    locked = (
        select(a.id).where(a.tenant == tenant, a.id.in_(ids), a.status == OPEN_STATUS, a.suppressed_by.is_(None))
        .order_by(a.id).with_for_update().subquery("locked")
    )
    return conn.execute(
        update(anomalies).where(a.id == locked.c.id)
        .values(original_score=a.risk_score, risk_score=func.greatest(1, func.round(a.risk_score * weight)),
                suppressed_by=rule_id)
        .returning(a.id, a.user_name, a.risk_score, a.time, a.incident_id, a.status.label("old_status"))
    ).all()
