"""The writes of reviews: lock and change the anomalies, their incidents with them, one audit row each."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Row, exists, func, insert, select, update

from services.query.filters import AnomalyCriteria
from services.query.store.conditions import anomaly_conditions
from ueba.findings import INCIDENT_REVIEWED
from ueba.risk import OPEN_STATUS
from ueba.store import outbox
from ueba.store.schema import anomalies, audit_log, incidents

a = anomalies.c


def existing_ids(conn: Connection, tenant: str, ids: list[str]) -> set[str]:
    return set(conn.execute(select(a.id).where(a.tenant == tenant, a.id.in_(ids))).scalars())


def _selected(tenant: str, selection: list[str] | AnomalyCriteria) -> list:
    if isinstance(selection, AnomalyCriteria):
        return anomaly_conditions(tenant, selection)
    return [a.tenant == tenant, a.id.in_(selection)]


def status_counts(conn: Connection, tenant: str, selection: list[str] | AnomalyCriteria) -> dict[str, int]:
    """How many selected anomalies are in each status."""
    q = select(a.status, func.count()).where(*_selected(tenant, selection)).group_by(a.status)
    return dict(conn.execute(q).all())


def affected_users(conn: Connection, tenant: str, selection: list[str] | AnomalyCriteria, target: str | None) -> list[str]:
    """The accounts of the selected anomalies not yet in `target` (None: of every selected anomaly)."""
    q = select(a.user_name).where(*_selected(tenant, selection), a.user_name != "").distinct()
    if target is not None:
        q = q.where(a.status != target)
    return sorted(conn.execute(q).scalars())


def set_status(
    conn: Connection, tenant: str, selection: list[str] | AnomalyCriteria, target: str, values: dict,
    only_from: str | None = None,
) -> list[Row]:
    """Moves the selected anomalies not yet in `target` (and, with `only_from`, still in that status) there,
    setting `values` too (the review's or the suppression's columns); (id, user_name, risk_score, time,
    incident_id, old_status) of each."""
    since = [a.status == only_from] if only_from is not None else []
    old = (
        select(a.id, a.status.label("old_status"))
        .where(*_selected(tenant, selection), a.status != target, *since)
        .order_by(a.id)  # lock in one order so concurrent reviews cannot deadlock
        .with_for_update()
        .subquery("old")
    )
    return conn.execute(
        update(anomalies)
        .where(a.id == old.c.id)
        .values(status=target, **values)
        .returning(a.id, a.user_name, a.risk_score, a.time, a.incident_id, old.c.old_status)
    ).all()


def sync_incidents(conn: Connection, tenant: str, ids: set[str], target: str, reviewed: dict, now: datetime) -> None:
    """Each incident open while one of its findings is; else in `target`, reviewed as its last finding was."""
    if not ids:
        return
    i = incidents.c
    still_open = exists(select(1).where(a.tenant == tenant, a.incident_id == i.id, a.status == OPEN_STATUS))
    conn.execute(
        update(incidents).where(i.tenant == tenant, i.id.in_(sorted(ids)), still_open).values(
            status=OPEN_STATUS, reviewed_by=None, reviewed_at=None, review_comment=None, updated_at=now)
    )
    if target != OPEN_STATUS:
        closed = conn.execute(
            update(incidents).where(i.tenant == tenant, i.id.in_(sorted(ids)), ~still_open).values(
                status=target, updated_at=now, **reviewed).returning(*incidents.c)
        ).all()
        # Announced in the review's transaction, as findings are in theirs (docs/integrations.md).
        outbox.put(conn, [outbox.incident_row(row, INCIDENT_REVIEWED) for row in closed])


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
