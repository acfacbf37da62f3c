"""Hourly model scores (`event_scores`): a run's window replaced, and one user-day read back."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from psycopg.copy import QueuedLibpqWriter
from sqlalchemy import Connection, delete, select

from services.scorer.context import UserScope
from services.scorer.store.scope import scope_clauses
from services.scorer.window import DAY
from ueba.store.schema import event_scores


def delete_window(conn: Connection, tenant: str, start: datetime, end: datetime, scope: UserScope) -> None:
    conn.execute(delete(event_scores).where(
        event_scores.c.tenant == tenant, event_scores.c.hour >= start, event_scores.c.hour < end,
        *scope_clauses(scope, event_scores)))


# COPY's text format: backslash, tab and line ends inside a field are escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
# psycopg's queued writer holds up to 1024 writes (QUEUE_SIZE) while Postgres is behind: writes of
# 32 KiB bound that to 32 MiB.
_CHUNK = 1 << 15


def copy_text(value: str) -> str:
    """`value` as one field of a COPY text line."""
    return value.translate(_COPY_ESCAPES)


def copy_event_scores(conn: Connection, lines: Iterable[str]) -> int:
    """Writes COPY text lines (tenant, user_name, hour, model, score, features JSON, learning, run_id),
    each ending in a newline, fields escaped by copy_text, in chunks as they come; the number written."""
    written, chunk, size = 0, [], 0
    with conn.connection.driver_connection.cursor() as cur:
        # Queued: a thread sends while this one formats the next lines, so Postgres parses while Python
        # formats (a plain writer blocks on each flush until Postgres has read the chunk).
        with cur.copy(
            "COPY event_scores (tenant, user_name, hour, model, score, features, learning, run_id) FROM STDIN",
            writer=QueuedLibpqWriter(cur),
        ) as copy:
            for line in lines:
                chunk.append(line)
                size += len(line)
                if size >= _CHUNK:
                    copy.write("".join(chunk))
                    written, chunk, size = written + len(chunk), [], 0
            if chunk:
                copy.write("".join(chunk))
    return written + len(chunk)


def scores_of_day(conn: Connection, tenant: str, user: str, day_start: datetime) -> list:
    """Rows (hour, model, score, features) of one user's UTC day."""
    return conn.execute(
        select(event_scores.c.hour, event_scores.c.model, event_scores.c.score, event_scores.c.features)
        .where(event_scores.c.tenant == tenant, event_scores.c.user_name == user,
               event_scores.c.hour >= day_start, event_scores.c.hour < day_start + DAY)
    ).all()
