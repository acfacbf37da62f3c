"""Anomaly criteria (filters.AnomalyCriteria) as SQL conditions on `anomalies`.

Every value reaches Postgres as a bound parameter; free text becomes an ILIKE
pattern with its wildcards escaped.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import ColumnElement, and_, not_, or_, select

from services.query import querystring
from services.query.filters import AnomalyCriteria
from ueba.store.schema import anomalies, ignored_users

a = anomalies.c


def like_pattern(text: str) -> str:
    """`%text%` with the text's own % _ and \\ matched literally (ESCAPE '\\')."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def text_contains(column, text: str) -> ColumnElement[bool]:
    return column.ilike(like_pattern(text), escape="\\")


def starts_with(column, prefix: str) -> ColumnElement[bool]:
    return column.like(like_pattern(prefix)[1:], escape="\\")


def not_ignored(tenant: str, user_column) -> ColumnElement[bool]:
    # NOT IN an uncorrelated list is one hashed read of the ignore list per statement; a
    # correlated NOT EXISTS probed it once per row (1,001 times for a capped count).
    # ignored_users.user_name is part of its key, never NULL, so NOT IN means the same.
    return user_column.not_in(select(ignored_users.c.user_name).where(ignored_users.c.tenant == tenant))


def _score_between(low: int, high: int) -> ColumnElement[bool]:
    return and_(a.risk_score >= low, a.risk_score <= high)


def _clause_condition(clause: querystring.Clause) -> ColumnElement[bool]:
    v = clause.value
    if clause.field == "user":
        return a.user_name == v
    if clause.field in ("ip", "host"):
        return and_(a.entity_type == v[0], a.entity == v[1])
    if clause.field == "entity":
        return a.entity.in_(v)
    if clause.field == "incident":
        return a.incident_id == v
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


def _expression(node: querystring.Node) -> ColumnElement[bool]:
    if isinstance(node, querystring.Text):
        return text_contains(a.description, node.text)
    if isinstance(node, querystring.Clause):
        cond = _clause_condition(node)
        return not_(cond) if node.negated else cond
    if isinstance(node, querystring.Not):
        return not_(_expression(node.operand))
    if isinstance(node, querystring.All):
        return and_(*(_expression(x) for x in node.operands))
    return or_(*(_expression(x) for x in node.operands))


def query_conditions(parsed: querystring.ParsedQuery) -> list[ColumnElement[bool]]:
    """The boolean tree when there is one; else positive terms on one field are alternatives and everything else must hold."""
    if parsed.expr is not None:
        return [_expression(parsed.expr)]
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


def anomaly_conditions(tenant: str, c: AnomalyCriteria) -> list[ColumnElement[bool]]:
    """The WHERE conditions of the criteria for one tenant."""
    conditions: list[ColumnElement[bool]] = [a.tenant == tenant]
    if c.start is not None:
        conditions.append(a.time >= c.start)
    if c.end is not None:
        conditions.append(a.time < c.end)
    if c.score_bands:
        conditions.append(or_(*(_score_between(low, high) for low, high in c.score_bands)))
    if c.profiles:
        conditions.append(or_(a.profile_id.in_(c.profiles), a.profile_name.in_(c.profiles), a.profile_kind.in_(c.profiles)))
    if c.source is not None:
        conditions.append(a.source == c.source)
    if c.statuses:
        conditions.append(a.status.in_(c.statuses))
    if c.users:
        conditions.append(a.user_name.in_(c.users))
    if c.entities:
        conditions.append(or_(*(and_(a.entity_type == t, a.entity == n) for t, n in c.entities)))
    if c.incident_ids:
        conditions.append(a.incident_id.in_(c.incident_ids))
    if c.dimensions:
        conditions.append(a.dimension.in_(c.dimensions))
    if c.query is not None:
        conditions.extend(query_conditions(c.query))
    if c.hide_ignored:
        conditions.append(not_ignored(tenant, a.user_name))
    return conditions
