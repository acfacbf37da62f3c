"""Store access of the profiles service: profiles, audit log, anomalies, the
evaluator's cursor and the event reads that feed the detectors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import Connection, cast, delete, func, insert, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.types import Text, UserDefinedType

from services.profiles.defaults import DEFAULT_PROFILES, SEED_VERSION
from services.profiles.kinds import KINDS, ProfileSpec
from services.profiles.kinds.rare_event import ENTITIES
from services.profiles.records import EventRecord
from ueba.store.anomalies import AnomalyRecord, write_anomalies
from ueba.store.schema import audit_log, events, profile_cursors, profile_seeds, profiles

ALL_TENANTS = "*"
# Nothing is visible in this snapshot: the evaluator starts from the first event.
EMPTY_SNAPSHOT = "3:3:"


class PgSnapshot(UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw) -> str:
        return "pg_snapshot"


def snapshot_param(value: str):
    return cast(literal(value, Text), PgSnapshot())


# --- profiles ------------------------------------------------------------------

PROFILE_COLUMNS = (
    profiles.c.id, profiles.c.tenant, profiles.c.name, profiles.c.kind, profiles.c.enabled, profiles.c.risk_score,
    profiles.c.description, profiles.c.dimension, profiles.c.applications, profiles.c.parameters,
    profiles.c.builtin, profiles.c.created_at, profiles.c.updated_at,
)


def list_profiles(
    conn: Connection, tenant: str, *, kind: str | None, enabled_only: bool, after_name: str | None, limit: int
) -> list[Any]:
    q = select(*PROFILE_COLUMNS).where(profiles.c.tenant == tenant)
    if kind:
        q = q.where(profiles.c.kind == kind)
    if enabled_only:
        q = q.where(profiles.c.enabled.is_(True))
    if after_name is not None:
        q = q.where(profiles.c.name > after_name)
    return list(conn.execute(q.order_by(profiles.c.name).limit(limit)))


def get_profile(conn: Connection, tenant: str, profile_id: str, for_update: bool = False) -> Any | None:
    q = select(*PROFILE_COLUMNS).where(profiles.c.tenant == tenant, profiles.c.id == profile_id)
    if for_update:
        q = q.with_for_update()
    return conn.execute(q).first()


def name_taken(conn: Connection, tenant: str, name: str, except_id: str | None = None) -> bool:
    q = select(profiles.c.id).where(profiles.c.tenant == tenant, profiles.c.name == name)
    if except_id:
        q = q.where(profiles.c.id != except_id)
    return conn.execute(q).first() is not None


def insert_profile(conn: Connection, tenant: str, values: dict[str, Any], builtin: bool = False) -> Any:
    return conn.execute(
        insert(profiles).values(tenant=tenant, builtin=builtin, **values).returning(*PROFILE_COLUMNS)
    ).one()


def update_profile(conn: Connection, tenant: str, profile_id: str, values: dict[str, Any]) -> Any:
    return conn.execute(
        update(profiles)
        .where(profiles.c.tenant == tenant, profiles.c.id == profile_id)
        .values(updated_at=func.clock_timestamp(), **values)
        .returning(*PROFILE_COLUMNS)
    ).one()


def delete_profile(conn: Connection, tenant: str, profile_id: str) -> bool:
    return conn.execute(delete(profiles).where(profiles.c.tenant == tenant, profiles.c.id == profile_id)).rowcount > 0


def audit(conn: Connection, tenant: str, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
    conn.execute(insert(audit_log).values(tenant=tenant, actor=actor, action=action, target=target, details=details))


def seed_defaults(conn: Connection, tenant: str) -> int:
    """Creates the built-in profiles of a tenant once; returns how many were created."""
    claimed = conn.execute(
        pg_insert(profile_seeds).values(tenant=tenant, version=SEED_VERSION).on_conflict_do_nothing().returning(profile_seeds.c.tenant)
    ).first()
    if claimed is None:
        return 0
    created = 0
    for d in DEFAULT_PROFILES:
        row = conn.execute(
            pg_insert(profiles)
            .values(
                tenant=tenant, name=d.name, kind=d.kind, enabled=d.enabled, risk_score=d.risk_score,
                description=d.description, dimension=d.dimension, applications=[],
                parameters=KINDS[d.kind].check_parameters(d.parameters), builtin=True,
            )
            .on_conflict_do_nothing()
            .returning(profiles.c.id)
        ).first()
        if row is not None:
            created += 1
            audit(conn, tenant, "system", "profile.seed", row.id, {"name": d.name, "kind": d.kind})
    return created


def spec_of(row: Any) -> ProfileSpec:
    return ProfileSpec(
        id=str(row.id), name=row.name, kind=row.kind, risk_score=row.risk_score, parameters=dict(row.parameters),
        applications=tuple(row.applications or ()), dimension=row.dimension, tenant=row.tenant, enabled=row.enabled,
        description=row.description, updated_at=row.updated_at,
    )


def enabled_profile_versions(conn: Connection) -> dict[str, tuple[str, datetime]]:
    """id -> (tenant, updated_at) of every enabled profile of every tenant."""
    rows = conn.execute(select(profiles.c.id, profiles.c.tenant, profiles.c.updated_at).where(profiles.c.enabled.is_(True)))
    return {str(r.id): (r.tenant, r.updated_at) for r in rows}


def load_profiles(conn: Connection, ids: Sequence[str]) -> list[ProfileSpec]:
    if not ids:
        return []
    rows = conn.execute(select(*PROFILE_COLUMNS).where(profiles.c.id.in_(list(ids)), profiles.c.enabled.is_(True)))
    return [spec_of(r) for r in rows]


def seeded_tenants(conn: Connection) -> set[str]:
    return {r.tenant for r in conn.execute(select(profile_seeds.c.tenant))}


# --- anomalies ---------------------------------------------------------------------


def insert_anomalies(conn: Connection, firings: Iterable[AnomalyRecord]) -> int:
    return write_anomalies(conn, firings)


# --- cursor ----------------------------------------------------------------------


@dataclass
class Cursor:
    snapshot: str
    high_water: datetime | None


def read_cursor(conn: Connection, consumer: str) -> Cursor | None:
    row = conn.execute(
        select(profile_cursors.c.snapshot, profile_cursors.c.high_water).where(
            profile_cursors.c.tenant == ALL_TENANTS, profile_cursors.c.consumer == consumer
        )
    ).first()
    return Cursor(row.snapshot, row.high_water) if row else None


def read_cursors(conn: Connection, consumers: Iterable[str]) -> dict[str, Cursor]:
    rows = conn.execute(
        select(profile_cursors.c.consumer, profile_cursors.c.snapshot, profile_cursors.c.high_water).where(
            profile_cursors.c.tenant == ALL_TENANTS, profile_cursors.c.consumer.in_(list(consumers))
        )
    )
    return {r.consumer: Cursor(r.snapshot, r.high_water) for r in rows}


def write_cursor(conn: Connection, consumer: str | Sequence[str], cursor: Cursor) -> None:
    """Stores `cursor` as the cursor of one consumer, or of several at once (buckets that moved together)."""
    names = [consumer] if isinstance(consumer, str) else list(consumer)
    stmt = pg_insert(profile_cursors).values([
        {"tenant": ALL_TENANTS, "consumer": name, "snapshot": cursor.snapshot, "high_water": cursor.high_water,
         "updated_at": func.clock_timestamp()}
        for name in names
    ])
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["tenant", "consumer"],
        set_={"snapshot": stmt.excluded.snapshot, "high_water": stmt.excluded.high_water, "updated_at": stmt.excluded.updated_at},
    ))


def current_snapshot(conn: Connection) -> str:
    return conn.execute(text("SELECT pg_current_snapshot()::text")).scalar_one()


# --- events ------------------------------------------------------------------------

# In EventRecord's field order, so that a row is its positional arguments (the record computes
# `ts`; the delta page reads it: date_part's double is datetime.timestamp()'s, and free there).
EVENT_COLUMNS = (
    events.c.event_id, events.c.time, events.c.user_name, events.c.event_type, events.c.outcome, events.c.tenant,
    # As text: parsing every address into an ipaddress object costs more than the detectors.
    func.host(events.c.source_ip), events.c.source_host, events.c.destination_host, events.c.application, events.c.country,
    events.c.city, events.c.latitude, events.c.longitude, events.c.bytes, events.c.file_count, events.c.action,
    events.c.department, events.c.producer, events.c.object, events.c.failure_reason, events.c.logon_type,
    events.c.trusted_source,
)
_EVENT_NAMES = (
    "event_id, time, user_name, event_type, outcome, tenant, source_ip, source_host, destination_host,"
    " application, country, city, latitude, longitude, bytes, file_count, action, department, producer, object,"
    " failure_reason, logon_type, trusted_source"
)
_EVENT_SQL = _EVENT_NAMES.replace(" source_ip,", " host(source_ip) AS source_ip,")
# The new rows in commit order, a page at a time: rows whose writing transaction was not visible
# in the cursor (one of the transactions it saw in progress, or at or after its xmax). Two index
# scans in txid order, merged, stop after the page: a whole backlog is never read or sorted.
# A replica that owns some of the hash buckets adds `_IN_BUCKETS`: a filter on the same scans.
_IN_BUCKETS = " AND ueba_bucket(tenant, user_name, %(n_buckets)s) = ANY(%(buckets)s::int[])"


def _delta_sql(where: str) -> tuple[str, str]:
    page = f"""
SELECT {_EVENT_NAMES}, date_part('epoch', time), txid::text::bigint FROM (
    (SELECT {_EVENT_SQL}, txid FROM events
      WHERE txid = ANY(ARRAY(SELECT pg_snapshot_xip(%(since)s::pg_snapshot))){where} ORDER BY txid LIMIT %(n)s)
    UNION ALL
    (SELECT {_EVENT_SQL}, txid FROM events
      WHERE txid >= pg_snapshot_xmax(%(since)s::pg_snapshot){where} ORDER BY txid LIMIT %(n)s)
) page ORDER BY page.txid LIMIT %(n)s"""
    one = f"SELECT {_EVENT_SQL}, date_part('epoch', time), txid::text::bigint FROM events WHERE txid = %(txid)s::text::xid8{where}"
    return page, one


_DELTA_PAGE, _ONE_TRANSACTION = _delta_sql("")
_DELTA_PAGE_IN_BUCKETS, _ONE_TRANSACTION_IN_BUCKETS = _delta_sql(_IN_BUCKETS)


@dataclass(frozen=True)
class BucketSet:
    """Users of some of the N hash buckets (`ueba_bucket(tenant, user, N)`, migration 0008)."""

    n: int
    buckets: frozenset[int]

    def clause(self):
        return func.ueba_bucket(events.c.tenant, events.c.user_name, self.n).in_(sorted(self.buckets))


def delta_page(
    conn: Connection, since: str, page: int, buckets: BucketSet | None = None
) -> tuple[list[EventRecord], int | None]:
    """Rows visible now but not in `since` (of users in `buckets`, when given), in whole
    transactions of about `page` rows (one transaction larger than a page is taken whole); and
    the txid they end at, None when they are all there is.

    Read on the driver connection in binary, rows straight into EventRecords: the ORM's row
    processing cost more than the detectors, and datetime.timestamp() a fifth of them.
    """
    cursor = conn.connection.driver_connection.cursor(binary=True)
    if buckets is None:
        page_sql, one_sql, extra = _DELTA_PAGE, _ONE_TRANSACTION, {}
    else:
        page_sql, one_sql = _DELTA_PAGE_IN_BUCKETS, _ONE_TRANSACTION_IN_BUCKETS
        extra = {"n_buckets": buckets.n, "buckets": sorted(buckets.buckets)}
    rows = cursor.execute(page_sql, {"since": since, "n": page + 1, **extra}).fetchall()
    if len(rows) <= page:
        return [EventRecord(*r[:-1]) for r in rows], None
    first, cut = rows[0][-1], rows[page][-1]
    if cut == first:
        rows = cursor.execute(one_sql, {"txid": str(first), **extra}).fetchall()
        return [EventRecord(*r[:-1]) for r in rows], first
    # Up to the transaction before the one the page ends in.
    upto = cut - 1
    return [EventRecord(*r[:-1]) for r in rows if r[-1] <= upto], upto


def next_snapshot(since: str, current: str, upto_txid: int | None) -> str:
    """The snapshot in which exactly the rows of `since` plus the new rows up to `upto_txid` are visible.

    `current` is the snapshot the new rows were read in. Transactions up to
    upto_txid that `current` saw in progress stay invisible; everything else
    below upto_txid + 1 was committed (or aborted) by then and is taken.
    """
    if upto_txid is None:
        return current
    xmin, xmax, xip = current.split(":")
    if upto_txid + 1 >= int(xmax):
        return current
    new_xmax = upto_txid + 1
    running = sorted(int(x) for x in xip.split(",") if x and int(x) < new_xmax)
    new_xmin = running[0] if running else new_xmax
    return f"{new_xmin}:{new_xmax}:{','.join(str(x) for x in running)}"


# Rows of an account: a failure that names none (user_name '') is about its source, not for these detectors.
NAMED = events.c.user_name != ""


def replay_events(
    conn: Connection,
    tenant: str,
    since: datetime,
    until: datetime,
    *,
    event_types: Iterable[str] | None,
    until_inclusive: bool,
    visible_in: str | None = None,
    buckets: BucketSet | None = None,
    chunk: int = 5000,
) -> Iterator[EventRecord]:
    """Events of a tenant (of users in `buckets`, when given) in time order over [since, until] (or [since, until))."""
    q = select(*EVENT_COLUMNS).where(
        events.c.tenant == tenant, events.c.time >= since, events.c.time <= until if until_inclusive else events.c.time < until,
        NAMED,
    )
    if event_types is not None:
        q = q.where(events.c.event_type.in_(sorted(event_types)))
    if visible_in is not None:
        q = q.where(func.pg_visible_in_snapshot(events.c.txid, snapshot_param(visible_in)))
    if buckets is not None:
        q = q.where(buckets.clause())
    q = q.order_by(events.c.time, events.c.event_id)
    result = conn.execute(q.execution_options(stream_results=True, yield_per=chunk))
    for row in result:
        yield EventRecord(*row)


def user_history(
    conn: Connection, tenant: str, since: datetime, until: datetime, visible_in: str | None, buckets: BucketSet | None = None
) -> list[tuple]:
    """(user, latest department, first seen) over [since, until)."""
    q = select(
        events.c.user_name,
        func.max(events.c.department),
        func.min(events.c.time),
    ).where(events.c.tenant == tenant, events.c.time >= since, events.c.time < until, NAMED)
    if visible_in is not None:
        q = q.where(func.pg_visible_in_snapshot(events.c.txid, snapshot_param(visible_in)))
    if buckets is not None:
        q = q.where(buckets.clause())
    return [tuple(r) for r in conn.execute(q.group_by(events.c.user_name))]


def entity_history(
    conn: Connection, tenant: str, entity_types: Iterable[str], since: datetime, until: datetime, visible_in: str | None,
    buckets: BucketSet | None = None,
) -> list[tuple]:
    """(user, entity type, entity, first seen, last seen) over [since, until)."""
    out: list[tuple] = []
    for entity_type in entity_types:
        column = events.c[ENTITIES[entity_type][0]]
        value = func.upper(column) if entity_type == "country" else func.lower(column)
        q = select(events.c.user_name, value, func.min(events.c.time), func.max(events.c.time)).where(
            events.c.tenant == tenant, events.c.time >= since, events.c.time < until, column.is_not(None), column != "", NAMED
        )
        if visible_in is not None:
            q = q.where(func.pg_visible_in_snapshot(events.c.txid, snapshot_param(visible_in)))
        if buckets is not None:
            q = q.where(buckets.clause())
        for user, entity, first, last in conn.execute(q.group_by(events.c.user_name, value)):
            out.append((user, entity_type, entity, first, last))
    return out


def daily_upload_history(
    conn: Connection, tenant: str, since: datetime, until: datetime, visible_in: str | None, buckets: BucketSet | None = None
) -> list[tuple]:
    """(user, day, uploaded bytes) over [since, until)."""
    day = func.date_trunc("day", events.c.time, "UTC")
    q = select(events.c.user_name, day, func.sum(events.c.bytes)).where(
        events.c.tenant == tenant, events.c.time >= since, events.c.time < until, events.c.event_type == "file_upload",
        events.c.outcome != "failure",
    )
    if visible_in is not None:
        q = q.where(func.pg_visible_in_snapshot(events.c.txid, snapshot_param(visible_in)))
    if buckets is not None:
        q = q.where(buckets.clause())
    return [tuple(r) for r in conn.execute(q.group_by(events.c.user_name, day))]
