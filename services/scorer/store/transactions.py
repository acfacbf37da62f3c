"""The scorer's transactions: REPEATABLE READ (one snapshot for the whole stage), in UTC."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Connection, Engine, RootTransaction, text


@contextmanager
def repeatable_read(engine: Engine) -> Iterator[tuple[Connection, RootTransaction]]:
    """A transaction that commits when the block ends (unless committed before) and rolls back on error.
    The session time zone is UTC: date_trunc and extract work in it."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin() as tx:
            conn.execute(text("SET LOCAL TIME ZONE 'UTC'"))
            yield conn, tx
