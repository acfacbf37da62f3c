"""All of the delivery service's SQL: routing outbox rows, leasing, recording outcomes, reading."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import Connection, and_, delete, exists, func, insert, not_, or_, select, update

from services.delivery.destinations import Destination
from ueba.store.schema import deliveries, outbox

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
STATUSES = (PENDING, DELIVERED, DEAD)
d, o = deliveries.c, outbox.c


@dataclass(frozen=True)
class Claimed:
    outbox_id: int
    attempts: int  # this attempt included
    created_at: datetime
    document: dict[str, Any]


def route(conn: Connection, destinations: Iterable[Destination], limit: int) -> int:
    """Creates the deliveries of up to `limit` unrouted outbox rows (other routers skip them); how many rows."""
    rows = conn.execute(
        select(o.id, o.tenant, o.kind, o.risk_score).where(o.routed.is_(False)).order_by(o.id).limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return 0
    targets = [{"outbox_id": r.id, "destination": dest.name, "tenant": r.tenant}
               for r in rows for dest in destinations if dest.wants(r.tenant, r.kind, r.risk_score)]
    if targets:
        conn.execute(insert(deliveries), targets)
    conn.execute(update(outbox).where(o.id.in_([r.id for r in rows])).values(routed=True))
    return len(rows)


def claim(conn: Connection, destination: str, owner: str, lease_seconds: float, limit: int,
          held: tuple[frozenset[str], int] | None) -> list[Claimed]:
    """Leases up to `limit` due deliveries of a destination to `owner`, oldest due first.

    A lease that ran out (its worker died or hung) makes the delivery due again.
    `held`: kinds below a risk that wait out the destination's quiet hours.
    """
    due = select(d.outbox_id).where(
        d.destination == destination, d.status == PENDING, d.next_attempt_at <= func.now(),
        or_(d.lease_until.is_(None), d.lease_until < func.now()),
    )
    if held is not None:
        kinds, min_risk = held
        quiet = exists(select(1).where(o.id == d.outbox_id, o.kind.in_(sorted(kinds)), o.risk_score < min_risk))
        due = due.where(not_(quiet))
    due = due.order_by(d.next_attempt_at, d.outbox_id).limit(limit).with_for_update(skip_locked=True)
    leased = conn.execute(
        update(deliveries).where(d.destination == destination, d.outbox_id.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_until=func.now() + timedelta(seconds=lease_seconds), attempts=d.attempts + 1)
        .returning(d.outbox_id, d.attempts)
    ).all()
    if not leased:
        return []
    attempts = dict(leased)
    docs = conn.execute(select(o.id, o.created_at, o.document).where(o.id.in_(list(attempts))).order_by(o.id)).all()
    return [Claimed(r.id, attempts[r.id], r.created_at, r.document) for r in docs]


def delivered(conn: Connection, destination: str, outbox_ids: list[int]) -> dict[int, datetime]:
    """Marks deliveries done, whoever holds their lease now; when each was (not those already done)."""
    if not outbox_ids:
        return {}
    return dict(conn.execute(
        update(deliveries).where(d.outbox_id.in_(outbox_ids), d.destination == destination, d.status == PENDING)
        .values(status=DELIVERED, delivered_at=func.clock_timestamp(), lease_owner=None, lease_until=None,
                last_error=None)
        .returning(d.outbox_id, d.delivered_at)
    ).all())


def failed(conn: Connection, destination: str, owner: str, outbox_id: int, error: str, retry_in: float | None) -> None:
    """Schedules the next attempt in `retry_in` seconds, or gives up (dead) when None.

    Only under the caller's own lease: a worker whose lease ran out does not move a delivery another now holds.
    """
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "last_error": error[:1000]}
    if retry_in is None:
        values["status"] = DEAD
    else:
        values["next_attempt_at"] = func.clock_timestamp() + timedelta(seconds=retry_in)
    conn.execute(update(deliveries).where(
        d.outbox_id == outbox_id, d.destination == destination, d.status == PENDING, d.lease_owner == owner,
    ).values(**values))


def release(conn: Connection, destination: str, owner: str, outbox_ids: list[int]) -> None:
    """Gives back leased deliveries not attempted (their attempt is not counted)."""
    if outbox_ids:
        conn.execute(update(deliveries).where(
            d.destination == destination, d.outbox_id.in_(outbox_ids), d.status == PENDING, d.lease_owner == owner,
        ).values(lease_owner=None, lease_until=None, attempts=d.attempts - 1))


def delivered_recently(conn: Connection, destination: str, seconds: float) -> int:
    return conn.execute(select(func.count()).where(
        d.destination == destination, d.delivered_at > func.now() - timedelta(seconds=seconds),
    )).scalar_one()


def counts(conn: Connection) -> dict[tuple[str, str], int]:
    """Pending and dead deliveries per destination, for the gauges."""
    rows = conn.execute(select(d.destination, d.status, func.count()).where(d.status != DELIVERED)
                        .group_by(d.destination, d.status)).all()
    return {(dest, status): n for dest, status, n in rows}


def unrouted(conn: Connection) -> int:
    return conn.execute(select(func.count()).where(o.routed.is_(False))).scalar_one()


def prune(conn: Connection, older_than: datetime) -> int:
    """Removes routed outbox rows (and their deliveries) older than `older_than` with nothing pending."""
    pending = exists(select(1).where(d.outbox_id == o.id, d.status == PENDING))
    return conn.execute(delete(outbox).where(o.routed.is_(True), o.created_at < older_than, not_(pending))).rowcount


def listed(conn: Connection, tenant: str, status: str, destination: str, limit: int,
           after: tuple[int, str] | None) -> list:
    """A page of deliveries, newest outbox row first, then by destination."""
    q = select(deliveries, o.event_id, o.kind, o.action, o.entity_type, o.entity, o.risk_score,
               o.created_at.label("outbox_created_at")).join(outbox, o.id == d.outbox_id).where(d.tenant == tenant)
    if status:
        q = q.where(d.status == status)
    if destination:
        q = q.where(d.destination == destination)
    if after is not None:
        q = q.where(or_(d.outbox_id < after[0], and_(d.outbox_id == after[0], d.destination > after[1])))
    return conn.execute(q.order_by(d.outbox_id.desc(), d.destination).limit(limit)).all()


def requeue(conn: Connection, tenant: str, destination: str, outbox_ids: list[int]) -> int:
    """Dead deliveries back to pending, due now, with their attempts counted afresh."""
    q = update(deliveries).where(d.tenant == tenant, d.status == DEAD)
    if destination:
        q = q.where(d.destination == destination)
    if outbox_ids:
        q = q.where(d.outbox_id.in_(outbox_ids))
    return conn.execute(q.values(status=PENDING, attempts=0, next_attempt_at=func.now(), last_error=None)).rowcount
