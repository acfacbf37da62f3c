"""The writes of ReviewAnomalies: lock and change the anomalies, one audit row each."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Row, insert, select, update

from services.query.filters import AnomalyCriteria
from services.query.store.conditions import anomaly_conditions
from ueba.store.schema import anomalies, audit_log

a = anomalies.c


def existing_ids(conn: Connection, tenant: str, ids: list[str]) -> set[str]:
    return set(conn.execute(select(a.id).where(a.tenant == tenant, a.id.in_(ids))).scalars())


def set_status(
    conn: Connection, tenant: str, selection: list[str] | AnomalyCriteria, target: str, reviewed: dict
) -> list[Row]:
    """Moves the selected anomalies not yet in `target` there; (id, user_name, risk_score, time, old_status) of each."""
    if isinstance(selection, AnomalyCriteria):
        conditions = anomaly_conditions(tenant, selection)
    else:
        conditions = [a.tenant == tenant, a.id.in_(selection)]
    old = (
        select(a.id, a.status.label("old_status"))
        .where(*conditions, a.status != target)
        .order_by(a.id)  # lock in one order so concurrent reviews cannot deadlock
        .with_for_update()
        .subquery("old")
    )
    return conn.execute(
        update(anomalies)
        .where(a.id == old.c.id)
        .values(status=target, **reviewed)
        .returning(a.id, a.user_name, a.risk_score, a.time, old.c.old_status)
    ).all()


def record(conn: Connection, tenant: str, now: datetime, actor: str, action: str, changed: list[Row], details: dict) -> None:
    """One audit row per changed anomaly: `details` plus the anomaly's user and its status before and after."""
    conn.execute(
        insert(audit_log),
        [
            {
                "tenant": tenant, "at": now, "actor": actor, "action": action, "target": row.id,
                "details": {"user": row.user_name, "from": row.old_status, **details},
            }
            for row in changed
        ],
    )
