"""Databases and service environments for the agent tests."""

from __future__ import annotations

import os
import uuid

import psycopg

from ueba.db import libpq_url, with_database
from ueba.store.migrate import upgrade


def fresh_database(server_url: str) -> tuple[str, str]:
    name = f"ueba_agents_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    upgrade(url)
    return name, url


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ingest_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "UEBA_LISTEN": "127.0.0.1:0",
        "UEBA_METRICS_PORT": "-1",
        # The datasets are from 2020-2023 and the OpenSSH log's year is unknown:
        # accept any age and keep every partition.
        "UEBA_MAX_PAST_DAYS": "0",
        "UEBA_RETENTION_DAYS": "0",
        **extra,
    }
