"""The tenants and what a run reads of their users before scoring: who is ignored, and departments."""

from __future__ import annotations

from sqlalchemy import Connection, select

from ueba.store.schema import ignored_users, users


def ignored(conn: Connection, tenant: str) -> frozenset[str]:
    return frozenset(conn.execute(select(ignored_users.c.user_name).where(ignored_users.c.tenant == tenant)).scalars())


def departments(conn: Connection, tenant: str) -> dict[str, str | None]:
    return dict(conn.execute(select(users.c.user_name, users.c.department).where(users.c.tenant == tenant)).all())


def tenants(conn: Connection) -> set[str]:
    """Every tenant with a known user."""
    return set(conn.execute(select(users.c.tenant).distinct()).scalars())
