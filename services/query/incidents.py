"""Incidents: the list, one incident with its findings, and reviewing incidents with their findings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from services.query import review as reviews
from services.query.entity_names import entity_ref
from services.query.filters import parse_id
from services.query.store import incidents as store
from services.query.users import keyset_page
from services.query.vocab import level_band
from ueba.messages import ENUM_LEVEL, ENUM_STATUS
from ueba import paging
from ueba.errors import InvalidArgument, NotFound, check_text
from ueba.timestamps import time_range

ORDER_ALIASES = {"": "time desc", "time": "time desc", "risk": "risk desc"}
KEY_TYPES = {"time desc": (datetime, str), "risk desc": (int, datetime, str)}
MAX_IDS = 1000


def _order(text: str) -> str:
    name = " ".join(text.lower().split())
    name = ORDER_ALIASES.get(name, name)
    if name not in store.ORDER_COLUMNS:
        raise InvalidArgument(f"order_by: {text!r} is not one of {', '.join(store.ORDER_COLUMNS)}")
    return name


def _listing(req, user_mode: str) -> store.IncidentListing:
    statuses = []
    for n, status in enumerate(req.statuses):
        if status not in ENUM_STATUS:
            raise InvalidArgument(f"statuses[{n}]: unknown or unspecified status {status}")
        statuses.append(ENUM_STATUS[status])
    if req.min_risk_level and req.min_risk_level not in ENUM_LEVEL:
        raise InvalidArgument(f"min_risk_level: unknown risk level {req.min_risk_level}")
    start, end = time_range(req, "range")
    return store.IncidentListing(
        entity=entity_ref(req.entity, user_mode, "entity") if req.HasField("entity") else None,
        statuses=tuple(statuses),
        min_risk=level_band(ENUM_LEVEL[req.min_risk_level])[0] if req.min_risk_level else None,
        start=start,
        end=end,
    )


def list_incidents(conn: Connection, tenant: str, req, size: int, user_mode: str) -> tuple[list, str]:
    listing = _listing(req, user_mode)
    order = _order(req.order_by)
    fp = paging.fingerprint(tenant, "incidents", listing, order)
    after = paging.decode(fp, req.page_token, KEY_TYPES[order]).key if req.page_token else None
    rows = store.page(conn, tenant, listing, order, after, size + 1)
    columns = store.ORDER_COLUMNS[order]
    return keyset_page(rows, size, fp, lambda r: [r._mapping[c.name] for c in columns])


def get(conn: Connection, tenant: str, incident_id: str):
    """(the incident's row, its findings as JSON arrays)."""
    found = store.by_ids(conn, tenant, [parse_id("id", incident_id, "an incident")])
    if not found:
        raise NotFound(f"incident {incident_id} not found")
    return found[0], store.findings(conn, tenant, found[0].id)


def review(conn: Connection, tenant: str, req, actor: str, now: datetime, window_days: int):
    """Reviews the incidents `req` names with all their findings; (incidents changed, findings changed, risk changes)."""
    action = reviews.check_action(req.action)
    comment = check_text("comment", req.comment, reviews.MAX_COMMENT)
    if not req.ids:
        raise InvalidArgument("ids: give the incidents to review")
    if len(req.ids) > MAX_IDS:
        raise InvalidArgument(f"ids: more than {MAX_IDS}")
    ids = sorted({parse_id(f"ids[{n}]", v, "an incident") for n, v in enumerate(req.ids)})
    before = {r.id: r.status for r in store.by_ids(conn, tenant, ids)}
    missing = [x for x in ids if x not in before]
    if missing:
        raise NotFound(f"ids: {len(missing)} unknown incidents, e.g. {', '.join(missing[:3])}")
    changed, risk_changes = reviews.apply(
        conn, tenant, store.finding_ids(conn, tenant, ids), action, comment, actor, now, window_days
    )
    after = {r.id: r.status for r in store.by_ids(conn, tenant, ids)}
    return sum(1 for x in ids if after[x] != before[x]), len(changed), risk_changes
