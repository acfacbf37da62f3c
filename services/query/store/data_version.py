"""What a tenant's anomaly answers were read at, as columns of the statement that reads them.

(rollup generation, unmerged rollup deltas, ignore list): between two merges the delta rows
only grow, every statement that writes anomalies adds at least one (migrations 0004, 0020), and
the merge bumps the generation as it removes them; so an equal version read in a later snapshot
means no anomaly changed in between. The ignore list is in it as the digest of its names
(a few, usually none): answers that leave ignored accounts out change with it.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import ColumnElement, and_, func, literal, not_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from ueba.store.schema import anomaly_rollup, ignored_users, query_rollup_versions

VERSION_LABELS = ("version_generation", "version_unmerged", "version_ignored")


@lru_cache(maxsize=256)
def version_columns(tenant: str) -> tuple[ColumnElement, ...]:
    """Scalar subqueries (generation, unmerged, ignored) for one tenant; each runs once per statement.
    Built once per tenant: building them on every call was a sixth of the call's Python CPU (cProfile)."""
    v, r, i = query_rollup_versions.c, anomaly_rollup.c, ignored_users.c
    generation = func.coalesce(select(v.generation).where(v.tenant == tenant).scalar_subquery(), 0)
    unmerged = select(func.count()).where(r.tenant == tenant, not_(r.merged)).scalar_subquery()
    names = func.string_agg(i.user_name, aggregate_order_by(literal("\n"), i.user_name))
    ignored = func.coalesce(select(func.md5(names)).where(i.tenant == tenant).scalar_subquery(), "")
    return generation, unmerged, ignored


def matches(columns: tuple[ColumnElement, ...], version: tuple) -> ColumnElement[bool]:
    """The statement's version equals `version`."""
    return and_(*(c == literal(value) for c, value in zip(columns, version)))
