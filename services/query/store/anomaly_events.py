"""The stored events behind one anomaly, a page at a time."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Text, cast, exists, false, func, literal, or_, select, tuple_
from sqlalchemy.dialects.postgresql import INET

from ueba.store.schema import anomalies, events

e = events.c
a = anomalies.c
EVENT_COLUMNS = [c for c in events.c if c.name not in ("tenant", "ingested_at", "txid")]


@dataclass(frozen=True)
class Subject:
    """Whom an anomaly is about and when, and the event ids its evidence cites."""

    entity_type: str  # 'user', 'ip' or 'host'
    entity: str
    start: datetime
    end: datetime
    cited: tuple[str, ...]


def subject(conn: Connection, tenant: str, anomaly_id: str) -> Subject | None:
    row = conn.execute(
        select(a.entity_type, a.entity, a.user_name, a.window_start, a.window_end, a.evidence["event_ids"].label("cited"))
        .where(a.tenant == tenant, a.id == anomaly_id)
    ).one_or_none()
    if row is None:
        return None
    cited = row.cited if isinstance(row.cited, list) else []
    # Findings stored before entities name only their account.
    entity_type, entity = (row.entity_type, row.entity) if row.entity else ("user", row.user_name)
    return Subject(entity_type, entity, row.window_start, row.window_end,
                   tuple(str(x) for x in cited if isinstance(x, (str, int))))


def _about(s: Subject):
    if s.entity_type == "ip":
        try:
            address = str(ipaddress.ip_address(s.entity))
        except ValueError:
            return false()  # not an address: no event came from it
        return e.source_ip == cast(address, INET)
    if s.entity_type == "host":
        return func.lower(e.source_host) == s.entity  # hosts are stored in lower case on findings, not on events
    return e.user_name == s.entity


def page(conn: Connection, tenant: str, s: Subject, after: list[Any] | None, limit: int) -> list[Row]:
    """Up to `limit` events of `s` past the (time, event id) key `after`, oldest first.

    An event counts when its (type, outcome) is that of an event the finding cites; a finding that
    cites none of its window's events shows all of them.
    """
    in_window = [e.tenant == tenant, e.time >= s.start, e.time <= s.end]
    cited = select(e.event_type, e.outcome).where(*in_window, e.event_id.in_(s.cited))
    cited = cited.distinct().subquery()
    matching = or_(~exists(select(literal(1)).select_from(cited)),
                   tuple_(e.event_type, e.outcome).in_(select(cited.c.event_type, cited.c.outcome)))
    q = select(*EVENT_COLUMNS).where(*in_window, _about(s), matching)
    if after is not None:
        q = q.where(tuple_(e.time, e.event_id) > tuple_(literal(after[0], e.time.type), literal(after[1], Text)))
    return conn.execute(q.order_by(e.time, e.event_id).limit(limit)).all()
