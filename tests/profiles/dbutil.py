"""Putting events and profiles into a test database directly with SQL (no ingest)."""

from __future__ import annotations

from typing import Any, Iterable

import psycopg
from sqlalchemy import Engine, select

from services.profiles.kinds import KINDS
from services.profiles.records import EventRecord
from services.profiles.store import definitions
from ueba.db import libpq_url
from ueba.store.commits import announce_commit
from ueba.store.partitions import ensure_partitions
from ueba.store.schema import anomalies

COLUMNS = (
    "tenant", "event_id", "time", "user_name", "event_type", "outcome", "source_ip", "source_host", "destination_host",
    "application", "country", "city", "latitude", "longitude", "bytes", "file_count", "action", "department",
    "trusted_source",
)
INSERT = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"


def row(e: EventRecord, tenant: str) -> tuple[Any, ...]:
    return (tenant, e.event_id, e.time, e.user, e.event_type, e.outcome, e.source_ip, e.source_host,
            e.destination_host, e.application, e.country, e.city, e.latitude, e.longitude, e.bytes, e.file_count,
            e.action, e.department, e.trusted_source)


def connect(url: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), autocommit=autocommit)


def insert_events(
    url: str, events: Iterable[EventRecord], tenant: str = "default", per_transaction: int = 0, announce: bool = False
) -> None:
    """Commits the events, `per_transaction` at a time (0: all in one transaction), announcing
    each commit as ingest does when `announce`."""
    events = list(events)
    with connect(url) as conn:
        ensure_partitions(conn, {e.time.date() for e in events})
        step = per_transaction or max(1, len(events))
        for i in range(0, len(events), step):
            with conn.transaction():
                with conn.cursor() as cur:
                    cur.executemany(INSERT, [row(e, tenant) for e in events[i : i + step]])
                    if announce:
                        announce_commit(cur)


def add_profile(engine: Engine, kind: str, name: str | None = None, tenant: str = "default", risk_score: int = 50,
                enabled: bool = True, applications: tuple[str, ...] = (), **parameters: Any) -> str:
    with engine.begin() as conn:
        r = definitions.insert_profile(conn, tenant, {
            "name": name or kind, "kind": kind, "enabled": enabled, "risk_score": risk_score, "description": "",
            "applications": list(applications), "parameters": KINDS[kind].check_parameters(parameters), "dimension": "",
        })
    return str(r.id)


def stored_anomalies(engine: Engine, tenant: str | None = None) -> list[Any]:
    q = select(anomalies).order_by(anomalies.c.seq)
    if tenant:
        q = q.where(anomalies.c.tenant == tenant)
    with engine.connect() as conn:
        return list(conn.execute(q))
