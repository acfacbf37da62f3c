"""The Postgres server tests and benchmarks run against, and the scratch databases they make there."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from ueba.db import libpq_url, with_database


@contextmanager
def postgres_server(data_dir: str | Path) -> Iterator[str]:
    """DATABASE_URL when set; else an embedded server kept in `data_dir`, stopped on exit."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from ueba.embedded import EmbeddedPostgres  # pgserver only when it is needed

    with EmbeddedPostgres(data_dir) as url:
        yield url


def database_exists(server_url: str, name: str) -> bool:
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """Creates database `name` on the server, a copy of `template` when given; returns its URL."""
    # Generated or operator-given names, not request input.
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_database(server_url: str, prefix: str, template: str | None = None) -> tuple[str, str]:
    """Creates a database named `<prefix>_<pid>_<random>`, so that runs never collide, empty or a
    copy of `template` (which must have no connections); returns (name, URL)."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    return name, create_database(server_url, name, template)


@contextmanager
def scratch_database(server_url: str, prefix: str, keep: bool = False) -> Iterator[str]:
    """A new empty database (new_database), yielded as its URL and dropped on exit unless `keep`."""
    name, url = new_database(server_url, prefix)
    try:
        yield url
    finally:
        if keep:
            print(f"kept database {name}", file=sys.stderr)
        else:
            drop_database(server_url, name)
