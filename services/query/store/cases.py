"""Cases: their rows, the incidents they hold, and their timeline entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, literal, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ueba.store.schema import case_entries, case_incidents, cases

c = cases.c
ci = case_incidents.c
e = case_entries.c


def create(conn: Connection, tenant: str, values: dict[str, Any]) -> Row:
    return conn.execute(insert(cases).values(tenant=tenant, **values).returning(cases)).one()


def attach(conn: Connection, tenant: str, case_id: str, incident_ids: list[str]) -> list[str]:
    """Puts the incidents into the case; those already in a case are left out of the ids returned."""
    stmt = pg_insert(case_incidents).values([{"tenant": tenant, "case_id": case_id, "incident_id": i} for i in incident_ids])
    return list(conn.execute(stmt.on_conflict_do_nothing(index_elements=["tenant", "incident_id"]).returning(ci.incident_id)).scalars())


def cases_of(conn: Connection, tenant: str, incident_ids: list[str]) -> dict[str, str]:
    """{incident id: the case holding it} of those of `incident_ids` that are in a case."""
    q = select(ci.incident_id, ci.case_id).where(ci.tenant == tenant, ci.incident_id.in_(incident_ids))
    return dict(conn.execute(q).all())


def get(conn: Connection, tenant: str, case_id: str, lock: bool = False) -> Row | None:
    q = select(cases).where(c.tenant == tenant, c.id == case_id)
    return conn.execute(q.with_for_update() if lock else q).first()


def change(conn: Connection, tenant: str, case_id: str, values: dict[str, Any]) -> Row:
    return conn.execute(update(cases).where(c.tenant == tenant, c.id == case_id).values(**values).returning(cases)).one()


def add_entry(conn: Connection, tenant: str, case_id: str, actor: str, at: datetime, kind: str, text: str = "",
              details: dict | None = None) -> None:
    conn.execute(insert(case_entries).values(tenant=tenant, case_id=case_id, actor=actor, at=at, kind=kind, text=text,
                                             details=details or {}))


def entries(conn: Connection, tenant: str, case_id: str) -> list[Row]:
    return conn.execute(select(case_entries).where(e.tenant == tenant, e.case_id == case_id).order_by(e.id)).all()


def incident_ids(conn: Connection, tenant: str, case_ids: list[str]) -> dict[str, list[str]]:
    """{case id: its incident ids, sorted}."""
    out: dict[str, list[str]] = {i: [] for i in case_ids}
    q = select(ci.case_id, ci.incident_id).where(ci.tenant == tenant, ci.case_id.in_(case_ids)).order_by(ci.incident_id)
    for case_id, incident_id in conn.execute(q):
        out[case_id].append(incident_id)
    return out


def comment_counts(conn: Connection, tenant: str, case_ids: list[str]) -> dict[str, int]:
    q = (select(e.case_id, func.count()).where(e.tenant == tenant, e.case_id.in_(case_ids), e.kind == "comment")
         .group_by(e.case_id))
    return dict(conn.execute(q).all())


def page(conn: Connection, tenant: str, statuses: tuple[str, ...], owner: str | None, after: list | None,
         limit: int) -> list[Row]:
    """Cases most recently changed first, past the key (updated_at, id) `after`."""
    q = select(cases).where(c.tenant == tenant)
    if statuses:
        q = q.where(c.status.in_(statuses))
    if owner is not None:
        q = q.where(c.owner == owner)
    if after is not None:
        q = q.where(tuple_(c.updated_at, c.id) < tuple_(literal(after[0], c.updated_at.type), literal(after[1], c.id.type)))
    return conn.execute(q.order_by(c.updated_at.desc(), c.id.desc()).limit(limit)).all()
