"""Reading anomalies: one page in one statement, one anomaly, export batches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Row, case, func, literal, literal_column, null, select, tuple_

from services.query.filters import AnomalyCriteria
from services.query.store.conditions import anomaly_conditions
from services.query.store.data_version import VERSION_LABELS, matches, version_columns
from services.query.store.json_rows import anomaly_json_sql
from services.query.store.reads import Reads
from ueba.store.schema import anomalies

a = anomalies.c
COLUMNS = [c for c in anomalies.c if c.name not in ("seq", "dedup_key")]
ANOMALY_JSON = literal_column(anomaly_json_sql("anomalies"))


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


# By the names of filters.ORDER_NAMES.
ORDERS = {
    "time desc": Order("time desc", (a.time, a.id), True, (datetime, str)),
    "time asc": Order("time asc", (a.time, a.id), False, (datetime, str)),
    "risk desc": Order("risk desc", (a.risk_score, a.time, a.id), True, (int, datetime, str)),
}


@dataclass
class AnomalyRows:
    rows: list  # anomalies as JSON arrays (convert.anomaly_from_json)
    keys: list[list[Any]]  # each row's sort key in its order
    total: int | None  # matching rows up to count_limit + 1, when asked for and not skipped
    version: tuple | None = None  # the data version the count was read at (data_version.py), when asked for


def page(
    reads: Reads, tenant: str, criteria: AnomalyCriteria, order: Order, limit: int, after: list[Any] | None,
    count_limit: int | None, count_known_at: tuple | None = None,
) -> AnomalyRows:
    """Up to `limit` rows past `after` in one statement; with `count_limit`, their capped count and
    the data version too, the count left out (None) when that version is `count_known_at`."""
    conditions = anomaly_conditions(tenant, criteria)
    columns = [ANOMALY_JSON.label("anomaly"), *order.columns]
    if count_limit is not None:
        # An uncorrelated scalar subquery: Postgres runs it once, before the rows, and only when
        # its value is first needed, so a CASE on an unchanged version skips it.
        matching = select(literal(1)).where(*conditions).limit(count_limit + 1).subquery()
        count = select(func.count()).select_from(matching).scalar_subquery()
        versions = version_columns(tenant)
        if count_known_at is not None:
            count = case((matches(versions, count_known_at), null()), else_=count)
        columns += [count.label("total"), *(c.label(name) for c, name in zip(versions, VERSION_LABELS))]
    q = select(*columns).select_from(anomalies).where(*conditions)
    if after is not None:
        q = q.where(order.after(after))
    # Planned for its values on every call: the best plan hangs on how many rows match (a rare word
    # in the description: the trigram index and a sort; a common one: the order's index, stopping
    # at the limit). Prepared, Postgres settled on a generic plan costed at a default selectivity
    # for any text search, and a common word's page read and sorted every match (README).
    rows = reads.all(q.order_by(*order.sort()).limit(limit), prepared=False)
    total = version = None
    if count_limit is not None:
        total = rows[0].total if rows else 0  # no row on the first page: nothing matches
        version = tuple(rows[0]._mapping[name] for name in VERSION_LABELS) if rows else None
    return AnomalyRows([r.anomaly for r in rows], [order.key_of(r) for r in rows], total, version)


def get(conn: Connection, tenant: str, anomaly_id: str) -> list | None:
    """The anomaly as a JSON array (convert.anomaly_from_json), None when there is none."""
    return conn.execute(select(ANOMALY_JSON).where(a.tenant == tenant, a.id == anomaly_id)).scalar_one_or_none()


def export_batch(engine: Engine, tenant: str, criteria: AnomalyCriteria, after: list[Any] | None, limit: int) -> list[Row]:
    """The next `limit` anomalies, newest first, past `after`: each batch in its own short transaction."""
    order = ORDERS["time desc"]
    q = select(*COLUMNS).where(*anomaly_conditions(tenant, criteria))
    if after is not None:
        q = q.where(order.after(after))
    with engine.connect() as conn:
        return conn.execute(q.order_by(*order.sort()).limit(limit)).all()
