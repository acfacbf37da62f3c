"""Suppression rules: checking a rule, the findings it matches, and applying it (services/query/README.md, "Suppression rules")."""

from __future__ import annotations

import ipaddress
from datetime import datetime

from sqlalchemy import Connection, Row

from services.query import querystring, review
from services.query.entity_names import entity_ref
from services.query.filters import AnomalyCriteria, parse_id
from services.query.store import review as review_store
from services.query.store import suppression as store
from services.query.store.conditions import anomaly_conditions
from services.query.users import keyset_page
from ueba import paging
from services.query.vocab import SUPPRESSED
from ueba.errors import InvalidArgument, NotFound, check_text
from ueba.risk import OPEN_STATUS
from ueba.store.incidents import recount
from ueba.timestamps import from_proto
from ueba.v1 import query_pb2

ACTIONS = {query_pb2.SUPPRESSION_ACTION_SUPPRESS: "suppress", query_pb2.SUPPRESSION_ACTION_DOWN_WEIGHT: "down_weight"}
ACTION_ENUM = {v: k for k, v in ACTIONS.items()}
MAX_REASON = 1000
MAX_QUERY = 2000


def checked(req, now: datetime, user_mode: str) -> dict:
    """The columns of a new rule from its request, every criterion checked as it will be applied."""
    if req.action not in ACTIONS:
        raise InvalidArgument("action: give suppress or down-weight")
    action = ACTIONS[req.action]
    if action == "down_weight" and not 0 < req.weight < 1:
        raise InvalidArgument("weight: a down-weighting rule needs a factor above 0 and below 1, e.g. 0.5")
    if action == "suppress" and req.weight:
        raise InvalidArgument("weight: only a down-weighting rule has a weight")
    reason = check_text("reason", req.reason, MAX_REASON).strip()
    if not reason:
        raise InvalidArgument("reason: required (why these findings are not risk)")
    m = req.match
    values: dict = {"action": action, "weight": req.weight if action == "down_weight" else 0.0, "reason": reason}
    if m.HasField("entity"):
        values["entity_type"], values["entity"] = entity_ref(m.entity, user_mode, "match.entity")
    if m.profile.strip():
        values["profile"] = check_text("match.profile", m.profile).strip()
    if m.cidr.strip():
        try:
            values["cidr"] = str(ipaddress.ip_network(check_text("match.cidr", m.cidr).strip(), strict=False))
        except ValueError:
            raise InvalidArgument(f"match.cidr: {m.cidr[:64]!r} is not an address range such as 203.0.113.0/24") from None
    if m.query.strip():
        values["query"] = check_text("match.query", m.query, MAX_QUERY).strip()
        try:
            querystring.parse(values["query"], now, user_mode)
        except InvalidArgument as exc:
            raise InvalidArgument("match.query" + exc.message.removeprefix("filter.query")) from None
    if not any(k in values for k in ("entity", "profile", "cidr", "query")):
        raise InvalidArgument("match: give an entity, profile, cidr or query: a rule that matches everything is refused")
    if req.HasField("expires_at"):
        values["expires_at"] = from_proto(req.expires_at, "expires_at")
        if values["expires_at"] <= now:
            raise InvalidArgument("expires_at: already past")
    return values


def _conditions(tenant: str, rule: Row, now: datetime, user_mode: str) -> list:
    """The rule's criteria as conditions; a query's relative times count back from `now`, the time it is applied."""
    criteria = AnomalyCriteria(
        profiles=(rule.profile,) if rule.profile else (),
        entities=((rule.entity_type, rule.entity),) if rule.entity else (),
        query=querystring.parse(rule.query, now, user_mode) if rule.query else None,
        hide_ignored=False,
    )
    conditions = anomaly_conditions(tenant, criteria)
    if rule.cidr:
        conditions.append(store.in_range(rule.cidr))
    return conditions


def apply(conn: Connection, tenant: str, rule: Row, now: datetime, window_days: int, user_mode: str):
    """Applies one rule to the open findings it matches that no rule has changed yet, with an audit row each;
    (changed rows, risk changes)."""
    ids = store.open_matches(conn, _conditions(tenant, rule, now, user_mode))
    if not ids:
        return [], []

    def write() -> list:
        if rule.action == "suppress":
            # Only findings still open: one reviewed since they were matched keeps its review.
            changed = review_store.set_status(conn, tenant, ids, SUPPRESSED, {"suppressed_by": rule.id}, only_from=OPEN_STATUS)
            review_store.sync_incidents(conn, tenant, {r.incident_id for r in changed if r.incident_id}, SUPPRESSED, {}, now)
        else:
            changed = store.down_weight(conn, tenant, ids, rule.id, rule.weight)
            recount(conn, tenant, {r.incident_id for r in changed if r.incident_id})
        if changed:
            review_store.record(conn, tenant, now, rule.created_by, f"anomaly.{rule.action}", changed,
                                {"rule": rule.id, "reason": rule.reason})
        return changed

    return review.with_risk_changes(conn, tenant, ids, SUPPRESSED if rule.action == "suppress" else None, now,
                                    window_days, write)


def apply_active(conn: Connection, tenant: str, now: datetime, window_days: int, user_mode: str) -> int:
    """Applies every rule in force to the findings that arrived since; the number of findings changed."""
    return sum(len(apply(conn, tenant, rule, now, window_days, user_mode)[0]) for rule in store.active(conn, tenant, now))


def create(conn: Connection, tenant: str, req, actor: str, now: datetime, window_days: int, user_mode: str):
    """Stores the rule (audited) and applies it to the open findings at once; (rule row, changed rows, risk changes)."""
    rule = store.create(conn, tenant, checked(req, now, user_mode), actor, now)
    changed, changes = apply(conn, tenant, rule, now, window_days, user_mode)
    return rule, changed, changes


def delete(conn: Connection, tenant: str, rule_id: str, actor: str, now: datetime) -> Row:
    row = store.delete(conn, tenant, parse_id("id", rule_id, "a suppression rule"), actor, now)
    if row is None:
        raise NotFound(f"suppression rule {rule_id} not found (or deleted already)")
    return row


def is_active(rule: Row, now: datetime) -> bool:
    return rule.deleted_at is None and (rule.expires_at is None or rule.expires_at > now)


def list_rules(conn: Connection, tenant: str, req, now: datetime, size: int) -> tuple[list, str]:
    fp = paging.fingerprint(tenant, "suppression_rules", req.include_inactive)
    after = paging.decode(fp, req.page_token, (datetime, str)).key if req.page_token else None
    rows = store.page(conn, tenant, req.include_inactive, now, after, size + 1)
    return keyset_page(rows, size, fp, lambda r: [r.created_at, r.id])
