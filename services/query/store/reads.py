"""Connections for the read calls: autocommit, no ping, one retry on a dead connection (README: the hot calls)."""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import Engine, Row, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable


class Reads:
    def __init__(self, engine: Engine, pool_size: int, application_name: str = "ueba-query"):
        self.engine = create_engine(
            engine.url,
            pool_size=pool_size,
            max_overflow=0,
            pool_pre_ping=False,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": application_name},
        )

    def _run(self, statement: Executable, params: Mapping[str, Any] | None, fetch):
        for attempt in (1, 2):
            try:
                with self.engine.connect() as conn:
                    return fetch(conn.execute(statement, params or {}))
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def one(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Row:
        return self._run(statement, params, lambda result: result.one())

    def all(self, statement: Executable, params: Mapping[str, Any] | None = None) -> list[Row]:
        return self._run(statement, params, lambda result: result.all())

    # Owned by the server: its connections close when it stops.
    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.engine.dispose()
