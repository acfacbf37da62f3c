"""Entities: the risk-ordered list, one entity's detail, its risk over time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from services.query import timelines
from services.query.entity_names import entity_ref, entity_type_of
from services.query.store import entities as store
from services.query.store import incidents as incident_store
from services.query.users import keyset_page
from services.query.vocab import level_band
from ueba.messages import ENUM_LEVEL
from ueba import paging
from ueba.errors import InvalidArgument, NotFound
from ueba.risk import open_entity_scores, user_risk
from ueba.timestamps import time_range


def list_entities(conn: Connection, tenant: str, req, size: int) -> tuple[list, str]:
    entity_type = entity_type_of(req.type, "type", required=False)
    if req.min_risk_level and req.min_risk_level not in ENUM_LEVEL:
        raise InvalidArgument(f"min_risk_level: unknown risk level {req.min_risk_level}")
    min_risk = level_band(ENUM_LEVEL[req.min_risk_level])[0] if req.min_risk_level else None
    fp = paging.fingerprint(tenant, "entities", entity_type, min_risk)
    after = paging.decode(fp, req.page_token, (int, int, str, str)).key if req.page_token else None
    rows = store.list_entities(conn, tenant, entity_type, min_risk, after, size + 1)
    return keyset_page(rows, size, fp, lambda r: [int(r.risk), int(r.points), r.entity_type, r.entity])


@dataclass
class EntityView:
    entity_type: str
    name: str
    points: int
    risk: int
    open_anomalies: int
    first_seen: datetime | None
    last_seen: datetime | None
    linked: list[str]
    open_incidents: list  # incident rows
    recent: list  # anomalies as JSON arrays (convert.anomaly_from_json)


def get_entity(
    conn: Connection, tenant: str, ref, now: datetime, window_days: int, recent_limit: int, user_mode: str
) -> EntityView:
    entity_type, name = entity_ref(ref, user_mode, "entity")
    row = store.entity_detail(conn, tenant, entity_type, name, recent_limit)
    if row.first_finding is None and row.first_seen is None:
        raise NotFound(f"{entity_type} {name!r} not found")
    scores = open_entity_scores(conn, tenant, now, window_days, entity_type, [name]).get(name, [])
    points, risk, _level = user_risk(scores)
    return EntityView(
        entity_type, name, points, risk, len(scores),
        row.first_seen or row.first_finding, row.last_seen or row.last_finding,
        list(row.linked or []), incident_store.by_ids(conn, tenant, list(row.open_incidents or [])), row.recent or [],
    )


def entity_timeline(conn: Connection, tenant: str, req, now: datetime, user_mode: str):
    """(buckets [(start, anomalies, points, accounts)], bucket seconds) of one entity's findings."""
    entity = entity_ref(req.entity, user_mode, "entity")
    start, end, seconds = timelines.buckets_of(*time_range(req, "range"), req.bucket_seconds, now)
    return timelines.risk_buckets(conn, tenant, start, end, seconds, entity=entity), seconds
