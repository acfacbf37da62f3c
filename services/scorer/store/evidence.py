"""What a model anomaly quotes: the events of its top hour and the things first seen in an hour."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, text

from services.scorer.window import HOUR


def event_ids(conn: Connection, tenant: str, user: str, hour: datetime, limit: int = 50) -> list[str]:
    return list(conn.execute(
        text("""SELECT event_id FROM events WHERE tenant = :tenant AND user_name = :user
                AND time >= :hour AND time < :end ORDER BY time, event_id LIMIT :limit"""),
        {"tenant": tenant, "user": user, "hour": hour, "end": hour + HOUR, "limit": limit},
    ).scalars())


def first_seen_in(conn: Connection, tenant: str, user: str, entity_type: str, hour: datetime,
                  limit: int = 5) -> list[str]:
    """The user's entities of `entity_type` first seen in the hour from `hour`, in name order."""
    return list(conn.execute(
        text("""SELECT entity FROM entity_seen WHERE tenant = :tenant AND user_name = :user
                AND entity_type = :type AND first_seen >= :hour AND first_seen < :end ORDER BY entity LIMIT :limit"""),
        {"tenant": tenant, "user": user, "type": entity_type, "hour": hour, "end": hour + HOUR, "limit": limit},
    ).scalars())
