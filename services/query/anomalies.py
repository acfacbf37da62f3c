"""Listing, fetching and exporting anomalies."""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from sqlalchemy import Connection, ColumnElement, Engine, func, literal, literal_column, select, tuple_

from ueba import paging
from services.query.convert import anomaly_json_sql
from ueba.errors import InvalidArgument, NotFound
from services.query.filters import anomaly_conditions
from services.query.reads import Reads
from ueba.risk import risk_level
from ueba.store.schema import anomalies

a = anomalies.c
COLUMNS = [c for c in anomalies.c if c.name not in ("seq", "dedup_key")]


@dataclass(frozen=True)
class Order:
    name: str
    columns: tuple
    descending: bool
    key_types: tuple[type, ...]

    def sort(self) -> list:
        return [c.desc() if self.descending else c.asc() for c in self.columns]

    def after(self, key: list[Any]) -> ColumnElement[bool]:
        """Rows strictly past the cursor in this order: a row comparison the index serves."""
        left = tuple_(*self.columns)
        right = tuple_(*[literal(v, c.type) for v, c in zip(key, self.columns)])
        return left < right if self.descending else left > right

    def key_of(self, row) -> list[Any]:
        return [row._mapping[c.name] for c in self.columns]


ORDERS = {
    "time desc": Order("time desc", (a.time, a.id), True, (datetime, str)),
    "time asc": Order("time asc", (a.time, a.id), False, (datetime, str)),
    "risk desc": Order("risk desc", (a.risk_score, a.time, a.id), True, (int, datetime, str)),
}
ORDER_ALIASES = {"": "time desc", "time": "time desc", "risk": "risk desc"}


def parse_order(text: str) -> Order:
    name = " ".join(text.lower().split())
    name = ORDER_ALIASES.get(name, name)
    if name not in ORDERS:
        raise InvalidArgument(f"order_by: {text!r} is not one of {', '.join(ORDERS)}")
    return ORDERS[name]


@dataclass
class AnomalyPage:
    rows: list  # anomalies as JSON arrays (convert.anomaly_from_json)
    next_token: str
    total: int
    capped: bool


ANOMALY_JSON = literal_column(anomaly_json_sql("anomalies"))


def list_page(
    reads: Reads, tenant: str, f, order_by: str, size: int, token: str, count_limit: int, now: datetime
) -> AnomalyPage:
    """One page in one statement: the rows as JSON, their sort keys, and on the first page the capped count."""
    order = parse_order(order_by)
    fp = paging.fingerprint(tenant, f.SerializeToString(deterministic=True), order.name)
    cursor = paging.decode(fp, token, order.key_types) if token else None
    if cursor is not None:
        now = cursor.now  # relative times in the query keep meaning the same instant
    conditions = anomaly_conditions(f, tenant, now)
    columns = [ANOMALY_JSON.label("anomaly"), *order.columns]
    if cursor is None:
        # An uncorrelated scalar subquery: Postgres runs it once, before the rows.
        matching = select(literal(1)).where(*conditions).limit(count_limit + 1).subquery()
        columns.append(select(func.count()).select_from(matching).scalar_subquery().label("total"))
    q = select(*columns).select_from(anomalies).where(*conditions)
    if cursor is not None:
        q = q.where(order.after(cursor.key))
    rows = reads.all(q.order_by(*order.sort()).limit(size + 1))
    if cursor is None:
        total = rows[0].total if rows else 0  # no row on the first page: nothing matches
        capped = total > count_limit
        total = min(total, count_limit)
    else:
        total, capped = cursor.total or 0, cursor.capped
    next_token = ""
    if len(rows) > size:
        rows = rows[:size]
        next_token = paging.encode(fp, paging.PageToken(order.key_of(rows[-1]), now, total, capped))
    return AnomalyPage([r.anomaly for r in rows], next_token, total, capped)


def parse_id(field: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{field}: {value[:64]!r} is not an anomaly id (a UUID)") from None


def get(conn: Connection, tenant: str, anomaly_id: str):
    row = conn.execute(select(*COLUMNS).where(a.tenant == tenant, a.id == parse_id("id", anomaly_id))).first()
    if row is None:
        raise NotFound(f"anomaly {anomaly_id} not found")
    return row


EXPORT_FIELDS = [
    "id", "time", "user", "source", "profile_id", "profile_name", "profile_kind", "risk_score", "risk_level",
    "status", "dimension", "description", "window_start", "window_end", "created_at", "reviewed_by",
    "reviewed_at", "review_comment", "evidence",
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
    ]
    return [_cell(v) for v in values]


def export_csv(engine: Engine, tenant: str, f, now: datetime) -> Iterator[bytes]:
    """CSV of every matching anomaly in chunks of about 64 KiB, header first.

    Reads in keyset batches, each in its own short transaction, so memory stays
    constant and a slow reader never holds a snapshot open.
    """
    order = ORDERS["time desc"]
    conditions = anomaly_conditions(f, tenant, now)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    key = None
    while True:
        q = select(*COLUMNS).where(*conditions)
        if key is not None:
            q = q.where(order.after(key))
        with engine.connect() as conn:
            rows = conn.execute(q.order_by(*order.sort()).limit(EXPORT_BATCH)).all()
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
