"""Profile definitions: CRUD with the audit trail, seeding of the built-in profiles, and the
specs the evaluator builds detectors from."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.profiles.defaults import DEFAULT_PROFILES, SEED_VERSION
from services.profiles.kinds import KINDS, ProfileSpec
from ueba.store.schema import audit_log, profile_seeds, profiles

PROFILE_COLUMNS = (
    profiles.c.id, profiles.c.tenant, profiles.c.name, profiles.c.kind, profiles.c.enabled, profiles.c.risk_score,
    profiles.c.description, profiles.c.dimension, profiles.c.applications, profiles.c.parameters,
    profiles.c.builtin, profiles.c.created_at, profiles.c.updated_at,
)


def list_profiles(
    conn: Connection, tenant: str, *, kind: str | None, enabled_only: bool, after_name: str | None, limit: int
) -> list[Any]:
    q = select(*PROFILE_COLUMNS).where(profiles.c.tenant == tenant)
    if kind:
        q = q.where(profiles.c.kind == kind)
    if enabled_only:
        q = q.where(profiles.c.enabled.is_(True))
    if after_name is not None:
        q = q.where(profiles.c.name > after_name)
    return list(conn.execute(q.order_by(profiles.c.name).limit(limit)))


def get_profile(conn: Connection, tenant: str, profile_id: str, for_update: bool = False) -> Any | None:
    q = select(*PROFILE_COLUMNS).where(profiles.c.tenant == tenant, profiles.c.id == profile_id)
    if for_update:
        q = q.with_for_update()
    return conn.execute(q).first()


def name_taken(conn: Connection, tenant: str, name: str, except_id: str | None = None) -> bool:
    q = select(profiles.c.id).where(profiles.c.tenant == tenant, profiles.c.name == name)
    if except_id:
        q = q.where(profiles.c.id != except_id)
    return conn.execute(q).first() is not None


def insert_profile(conn: Connection, tenant: str, values: dict[str, Any], builtin: bool = False) -> Any:
    return conn.execute(
        insert(profiles).values(tenant=tenant, builtin=builtin, **values).returning(*PROFILE_COLUMNS)
    ).one()


def update_profile(conn: Connection, tenant: str, profile_id: str, values: dict[str, Any]) -> Any:
    return conn.execute(
        update(profiles)
        .where(profiles.c.tenant == tenant, profiles.c.id == profile_id)
        .values(updated_at=func.clock_timestamp(), **values)
        .returning(*PROFILE_COLUMNS)
    ).one()


def delete_profile(conn: Connection, tenant: str, profile_id: str) -> bool:
    return conn.execute(delete(profiles).where(profiles.c.tenant == tenant, profiles.c.id == profile_id)).rowcount > 0


def audit(conn: Connection, tenant: str, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
    conn.execute(insert(audit_log).values(tenant=tenant, actor=actor, action=action, target=target, details=details))


def seed_defaults(conn: Connection, tenant: str) -> int:
    """Creates the built-in profiles of a tenant once; returns how many were created."""
    claimed = conn.execute(
        pg_insert(profile_seeds).values(tenant=tenant, version=SEED_VERSION).on_conflict_do_nothing().returning(profile_seeds.c.tenant)
    ).first()
    if claimed is None:
        return 0
    created = 0
    for d in DEFAULT_PROFILES:
        row = conn.execute(
            pg_insert(profiles)
            .values(
                tenant=tenant, name=d.name, kind=d.kind, enabled=d.enabled, risk_score=d.risk_score,
                description=d.description, dimension=d.dimension, applications=[],
                parameters=KINDS[d.kind].check_parameters(d.parameters), builtin=True,
            )
            .on_conflict_do_nothing()
            .returning(profiles.c.id)
        ).first()
        if row is not None:
            created += 1
            audit(conn, tenant, "system", "profile.seed", row.id, {"name": d.name, "kind": d.kind})
    return created


def spec_of(row: Any) -> ProfileSpec:
    return ProfileSpec(
        id=str(row.id), name=row.name, kind=row.kind, risk_score=row.risk_score, parameters=dict(row.parameters),
        applications=tuple(row.applications or ()), dimension=row.dimension, tenant=row.tenant, enabled=row.enabled,
        description=row.description, updated_at=row.updated_at,
    )


def enabled_profile_versions(conn: Connection) -> dict[str, tuple[str, datetime]]:
    """id -> (tenant, updated_at) of every enabled profile of every tenant."""
    rows = conn.execute(select(profiles.c.id, profiles.c.tenant, profiles.c.updated_at).where(profiles.c.enabled.is_(True)))
    return {str(r.id): (r.tenant, r.updated_at) for r in rows}


def load_profiles(conn: Connection, ids: Sequence[str]) -> list[ProfileSpec]:
    if not ids:
        return []
    rows = conn.execute(select(*PROFILE_COLUMNS).where(profiles.c.id.in_(list(ids)), profiles.c.enabled.is_(True)))
    return [spec_of(r) for r in rows]


def seeded_tenants(conn: Connection) -> set[str]:
    return {r.tenant for r in conn.execute(select(profile_seeds.c.tenant))}

