"""AnomalyFilter (and its query string) as SQL conditions on `anomalies`.

Every value reaches Postgres as a bound parameter; free text becomes an ILIKE
pattern with its wildcards escaped.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select

from services.query import querystring
from services.query.convert import time_range
from ueba.errors import InvalidArgument, check_text
from services.query.vocab import DIMENSIONS, ENUM_LEVEL, ENUM_SOURCE, ENUM_STATUS, canonical_user, level_band
from ueba.store.schema import anomalies, ignored_users

a = anomalies.c
MAX_LIST_VALUES = 200


def like_pattern(text: str) -> str:
    """`%text%` with the text's own % _ and \\ matched literally (ESCAPE '\\')."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def text_contains(column, text: str) -> ColumnElement[bool]:
    return column.ilike(like_pattern(text), escape="\\")


def not_ignored(tenant_column, user_column) -> ColumnElement[bool]:
    return ~exists(
        select(1).where(ignored_users.c.tenant == tenant_column, ignored_users.c.user_name == user_column)
    )


def _values(field: str, values: Any, max_length: int = 256) -> list[str]:
    if len(values) > MAX_LIST_VALUES:
        raise InvalidArgument(f"{field}: more than {MAX_LIST_VALUES} values")
    return [check_text(f"{field}[{i}]", v, max_length) for i, v in enumerate(values)]


def _score_between(low: int, high: int) -> ColumnElement[bool]:
    return and_(a.risk_score >= low, a.risk_score <= high)


def _clause_condition(clause: querystring.Clause) -> ColumnElement[bool]:
    v = clause.value
    if clause.field == "user":
        return a.user_name == v
    if clause.field == "profile":
        return or_(a.profile_id == v, a.profile_name == v, a.profile_kind == v)
    if clause.field == "model":
        return and_(a.source == "model", a.profile_kind == v)
    if clause.field == "source":
        return a.source == v
    if clause.field == "status":
        return a.status.in_(v) if v is not None else a.status.is_not(None)
    if clause.field == "dimension":
        return a.dimension == v
    if clause.field == "risk":
        return _score_between(*v)
    if clause.field == "id":
        return a.id == v
    if clause.field == "after":
        return a.time >= v
    if clause.field == "before":
        return a.time < v
    raise AssertionError(clause.field)


def query_conditions(parsed: querystring.ParsedQuery) -> list[ColumnElement[bool]]:
    """Positive terms on one field are alternatives; everything else must hold."""
    conditions: list[ColumnElement[bool]] = [text_contains(a.description, t.text) for t in parsed.texts]
    alternatives: dict[str, list[ColumnElement[bool]]] = defaultdict(list)
    for clause in parsed.clauses:
        cond = _clause_condition(clause)
        if clause.negated:
            conditions.append(not_(cond))
        elif clause.field in ("risk", "after", "before"):
            conditions.append(cond)
        else:
            alternatives[clause.field].append(cond)
    conditions.extend(or_(*conds) for conds in alternatives.values())
    return conditions


def anomaly_conditions(f, tenant: str, now: datetime) -> list[ColumnElement[bool]]:
    """The WHERE conditions of an AnomalyFilter for one tenant."""
    conditions: list[ColumnElement[bool]] = [a.tenant == tenant]
    start, end = time_range(f, "range")
    if start is not None:
        conditions.append(a.time >= start)
    if end is not None:
        conditions.append(a.time < end)
    if f.risk_levels:
        bands = []
        for i, level in enumerate(f.risk_levels):
            if level not in ENUM_LEVEL:
                raise InvalidArgument(f"filter.risk_levels[{i}]: unknown or unspecified risk level {level}")
            bands.append(_score_between(*level_band(ENUM_LEVEL[level])))
        conditions.append(or_(*bands))
    if f.profiles:
        names = _values("filter.profiles", f.profiles)
        conditions.append(or_(a.profile_id.in_(names), a.profile_name.in_(names), a.profile_kind.in_(names)))
    if f.source:
        if f.source not in ENUM_SOURCE:
            raise InvalidArgument(f"filter.source: unknown source {f.source}")
        conditions.append(a.source == ENUM_SOURCE[f.source])
    if f.statuses:
        statuses = []
        for i, status in enumerate(f.statuses):
            if status not in ENUM_STATUS:
                raise InvalidArgument(f"filter.statuses[{i}]: unknown or unspecified status {status}")
            statuses.append(ENUM_STATUS[status])
        conditions.append(a.status.in_(statuses))
    users = [canonical_user(u) for u in _values("filter.users", f.users)]
    if users:
        conditions.append(a.user_name.in_(users))
    if f.dimensions:
        dims = [d.lower() for d in _values("filter.dimensions", f.dimensions)]
        for i, d in enumerate(dims):
            if d not in DIMENSIONS:
                raise InvalidArgument(f"filter.dimensions[{i}]: unknown dimension {d!r} (dimensions: {', '.join(DIMENSIONS)})")
        conditions.append(a.dimension.in_(dims))
    named_users = bool(users)
    if f.query.strip():
        parsed = querystring.parse(f.query, now)
        conditions.extend(query_conditions(parsed))
        named_users = named_users or bool(parsed.values("user"))
    if not f.include_ignored and not named_users:
        conditions.append(not_ignored(a.tenant, a.user_name))
    return conditions


def is_empty(f) -> bool:
    """True when a filter selects everything (ReviewAnomalies refuses that by mistake)."""
    return not (
        f.HasField("range") or f.risk_levels or f.profiles or f.source or f.statuses or f.users or f.dimensions or f.query.strip()
    )
