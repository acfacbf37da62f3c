"""What warm-up reads: a tenant's events of a past stretch in time order, and summaries
(users, seen entities, daily uploads) that seed the long memories."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable, Iterator

from sqlalchemy import Connection, func, select

from services.profiles.kinds.rare_event import ENTITIES
from services.profiles.records import EventRecord
from services.profiles.store.events import EVENT_COLUMNS, BucketSet, snapshot_param
from ueba.store.schema import anomalies, events


# Rows of an account: a failure that names none (user_name '') is about its source, not for these detectors.
NAMED = events.c.user_name != ""


def _scoped(q, visible_in: str | None, buckets: BucketSet | None):
    """`q` narrowed to rows naming an account, visible in a cursor's snapshot, of the users of `buckets`."""
    q = q.where(NAMED)
    if visible_in is not None:
        q = q.where(func.pg_visible_in_snapshot(events.c.txid, snapshot_param(visible_in)))
    if buckets is not None:
        q = q.where(buckets.clause())
    return q


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
        events.c.tenant == tenant, events.c.time >= since, events.c.time <= until if until_inclusive else events.c.time < until
    )
    if event_types is not None:
        q = q.where(events.c.event_type.in_(sorted(event_types)))
    q = _scoped(q, visible_in, buckets)
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
    ).where(events.c.tenant == tenant, events.c.time >= since, events.c.time < until)
    q = _scoped(q, visible_in, buckets)
    return [tuple(r) for r in conn.execute(q.group_by(events.c.user_name))]


def entity_history(
    conn: Connection, tenant: str, entity_types: Iterable[str], since: datetime, until: datetime, visible_in: str | None,
    buckets: BucketSet | None = None,
) -> list[tuple]:
    """(user, entity type, entity, first seen, last seen) over [since, until)."""
    out: list[tuple] = []
    for entity_type in entity_types:
        column = events.c[ENTITIES[entity_type][0]]
        if entity_type == "country":
            value = func.upper(column)
        elif entity_type == "source_ip":
            value = func.host(column)  # an inet: its text without the /32
        else:
            value = func.lower(column)
        q = select(events.c.user_name, value, func.min(events.c.time), func.max(events.c.time)).where(
            events.c.tenant == tenant, events.c.time >= since, events.c.time < until, column.is_not(None), *(() if entity_type == "source_ip" else (column != "",))
        )
        q = _scoped(q, visible_in, buckets)
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
    q = _scoped(q, visible_in, buckets)
    return [tuple(r) for r in conn.execute(q.group_by(events.c.user_name, day))]


def tenant_position(conn: Connection, tenant: str, visible_in: str, buckets: BucketSet | None = None) -> datetime | None:
    """The newest event time of a tenant (of users in `buckets`) among the rows visible in a
    cursor's snapshot: where that tenant's processed stream stands, whatever other tenants' times."""
    q = select(func.max(events.c.time)).where(events.c.tenant == tenant)
    return conn.execute(_scoped(q, visible_in, buckets)).scalar_one()


def fired_windows(
    conn: Connection, tenant: str, profile_id: str, since: datetime, until: datetime, longest: timedelta,
    buckets: BucketSet | None = None,
) -> list[tuple[str, datetime, datetime]]:
    """(group, window start, window end) of the windows a profile fired that end after `since`, whose
    anomaly time is at most `until` and (windows being at most `longest`) after since - longest."""
    q = select(anomalies.c.evidence["group"].astext, anomalies.c.window_start, anomalies.c.window_end).where(
        anomalies.c.tenant == tenant, anomalies.c.source == "rule", anomalies.c.profile_id == profile_id,
        anomalies.c.time >= since - longest, anomalies.c.time <= until, anomalies.c.window_end > since,
    )
    if buckets is not None:
        q = q.where(buckets.clause(anomalies))
    return [(group, start, end) for group, start, end in conn.execute(q) if group]


def failure_spread_history(
    conn: Connection, tenant: str, since: datetime, until: datetime, interval: float, *, include_trusted: bool,
    applications: list[str], visible_in: str | None,
) -> list[tuple[int, int, int]]:
    """(day index, distinct accounts, source-windows) of failed logons over [since, until): per source
    and fixed window (`epoch // interval`), how many accounts failed, as the failed-logins profile counts
    them live (services/profiles/source_spread.py)."""
    source = func.coalesce(func.host(events.c.source_ip), func.lower(events.c.source_host))
    window = func.floor(func.extract("epoch", events.c.time) / interval)
    per_window = select(
        window.label("win"), func.count(events.c.user_name.distinct()).label("accounts"),
    ).where(
        events.c.tenant == tenant, events.c.time >= since, events.c.time < until, events.c.event_type == "logon",
        events.c.outcome == "failure", source.is_not(None),
    )
    if not include_trusted:
        per_window = per_window.where(events.c.trusted_source.is_not(True))
    if applications:  # the profile's own filter, as it takes events live
        per_window = per_window.where(func.lower(events.c.application).in_(applications))
    per_window = _scoped(per_window, visible_in, None).group_by(source, window).subquery()
    day = func.floor(per_window.c.win * interval / 86400)
    q = select(day, per_window.c.accounts, func.count()).group_by(day, per_window.c.accounts)
    return [(int(d), int(a), int(n)) for d, a, n in conn.execute(q)]
