"""Listing, fetching and exporting anomalies: request checks, page tokens and the CSV form."""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from sqlalchemy import Engine

from services.query import filters
from services.query.filters import parse_id
from services.query.store import anomalies as store
from services.query.store import names as names_store
from services.query.store.reads import Reads
from services.query.versioned_cache import VersionedCache
from ueba import paging
from ueba.errors import NotFound
from ueba.risk import risk_level


@dataclass
class AnomalyPage:
    rows: list  # anomalies as JSON arrays (convert.anomaly_from_json)
    next_token: str
    total: int
    capped: bool


class CountCache(VersionedCache[int]):
    """Capped counts per (tenant, criteria, limit) with the data version they were read at (README: the capped count cache)."""


def list_page(
    reads: Reads, tenant: str, f, order_by: str, size: int, token: str, count_limit: int, now: datetime, user_mode: str,
    counts: CountCache,
) -> AnomalyPage:
    """One page in one statement: the rows, and on the first page the count capped at `count_limit`
    (from `counts` when the data version it was read at still holds)."""
    order = store.ORDERS[filters.parse_order(order_by)]
    fp = paging.fingerprint(tenant, f.SerializeToString(deterministic=True), order.name)
    cursor = paging.decode(fp, token, order.key_types) if token else None
    if cursor is not None:
        now = cursor.now  # relative times in the query keep meaning the same instant
    criteria = filters.criteria(f, now, user_mode)
    key = _count_key(tenant, criteria, count_limit) if cursor is None else None
    known = counts.get(key) if key is not None else None
    found = store.page(
        reads, tenant, criteria, order, size + 1, cursor.key if cursor else None, None if cursor else count_limit,
        known[0] if known else None,
    )
    if cursor is None:
        if found.total is None:  # the version held: the statement skipped the count
            found.total = known[1]
        elif key is not None and found.version is not None:
            counts.put(key, found.version, found.total)
        capped = found.total > count_limit
        total = min(found.total, count_limit)
    else:
        total, capped = cursor.total or 0, cursor.capped
    if cursor is None and found.total == 0:
        check_names_exist(reads, tenant, criteria)
    rows, next_token = found.rows, ""
    if len(rows) > size:
        rows = rows[:size]
        next_token = paging.encode(fp, paging.PageToken(found.keys[size - 1], now, total, capped))
    return AnomalyPage(rows, next_token, total, capped)


def _count_key(tenant: str, criteria: filters.AnomalyCriteria, count_limit: int) -> tuple | None:
    """The criteria as they were resolved (relative times at `now`, names canonical); None when a
    value cannot be hashed, and that count is not cached."""
    key = (tenant, criteria, count_limit)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def check_names_exist(reads: Reads, tenant: str, criteria: filters.AnomalyCriteria) -> None:
    """NotFound, with the nearest names, when an empty result is explained by a user or profile that does not exist."""
    parsed = criteria.query
    users = list(dict.fromkeys([*criteria.users, *(parsed.values("user") if parsed else [])]))
    for name in names_store.unknown_users(reads, tenant, users)[:1]:
        raise NotFound(f"user {name!r}: no such user{_did_you_mean(name, names_store.users_like(reads, tenant, name))}")
    wanted = list(dict.fromkeys([*criteria.profiles, *(parsed.values("profile") if parsed else [])]))
    if wanted:
        known = names_store.profile_names(reads, tenant)
        for name in wanted:
            if name not in known:
                raise NotFound(f"profile {name!r}: no such profile{_did_you_mean(name, known)}")


def _did_you_mean(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def get(conn, tenant: str, anomaly_id: str):
    row = store.get(conn, tenant, parse_id("id", anomaly_id))
    if row is None:
        raise NotFound(f"anomaly {anomaly_id} not found")
    return row


EXPORT_FIELDS = [
    "id", "time", "user", "source", "profile_id", "profile_name", "profile_kind", "risk_score", "risk_level",
    "status", "dimension", "description", "window_start", "window_end", "created_at", "reviewed_by",
    "reviewed_at", "review_comment", "evidence", "entity_type", "entity", "incident_id",
]
CHUNK_BYTES = 64 * 1024
EXPORT_BATCH = 2000
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _export_row(row) -> list[Any]:
    m = row._mapping
    values = [
        m["id"], m["time"], m["user_name"], m["source"], m["profile_id"], m["profile_name"], m["profile_kind"],
        m["risk_score"], risk_level(m["risk_score"]), m["status"], m["dimension"], m["description"],
        m["window_start"], m["window_end"], m["created_at"], m["reviewed_by"], m["reviewed_at"],
        m["review_comment"], json.dumps(m["evidence"], separators=(",", ":"), sort_keys=True),
        m["entity_type"], m["entity"], m["incident_id"],
    ]
    return [_cell(v) for v in values]


def export_csv(engine: Engine, tenant: str, criteria: filters.AnomalyCriteria) -> Iterator[bytes]:
    """CSV of every matching anomaly in chunks of about 64 KiB, header first.

    Reads in keyset batches, each in its own short transaction, so memory stays
    constant and a slow reader never holds a snapshot open.
    """
    order = store.ORDERS["time desc"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    key = None
    while True:
        rows = store.export_batch(engine, tenant, criteria, key, EXPORT_BATCH)
        for row in rows:
            writer.writerow(_export_row(row))
            if buffer.tell() >= CHUNK_BYTES:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        if len(rows) < EXPORT_BATCH:
            break
        key = order.key_of(rows[-1])
    if buffer.tell():
        yield buffer.getvalue().encode()
