"""Which user and profile names a tenant knows, for hints when a filter names one it does not."""

from __future__ import annotations

from sqlalchemy import select, union

from services.query.store.conditions import starts_with
from services.query.store.reads import Reads
from ueba.store.schema import anomalies, profiles, users

HINT_CANDIDATES = 200


def unknown_users(reads: Reads, tenant: str, names: list[str]) -> list[str]:
    """The names among `names` that neither an account nor a finding of the tenant has."""
    if not names:
        return []
    q = union(
        select(users.c.user_name).where(users.c.tenant == tenant, users.c.user_name.in_(names)),
        select(anomalies.c.user_name).where(anomalies.c.tenant == tenant, anomalies.c.user_name.in_(names)),
    )
    known = {r.user_name for r in reads.all(q)}
    return [n for n in names if n not in known]


def users_like(reads: Reads, tenant: str, name: str) -> list[str]:
    """Account names (of accounts or findings) sharing the first letters of `name`, at most HINT_CANDIDATES of each."""
    q = union(*(
        select(t.c.user_name).where(t.c.tenant == tenant, starts_with(t.c.user_name, name[:2])).limit(HINT_CANDIDATES)
        for t in (users, anomalies)
    ))
    return [r.user_name for r in reads.all(q)]


def profile_names(reads: Reads, tenant: str) -> set[str]:
    """Every id, name and kind a `profile:` term can match: the tenant's profiles and the findings' own."""
    p, a = profiles.c, anomalies.c
    q = union(
        select(p.id.cast(a.profile_id.type).label("n")).where(p.tenant == tenant),
        select(p.name).where(p.tenant == tenant),
        select(p.kind).where(p.tenant == tenant),
        select(a.profile_kind).where(a.tenant == tenant).distinct(),
    )
    return {r.n for r in reads.all(q)}
