"""Fixtures of the agent-facing tests: a database of their own and a running ingest service."""

from __future__ import annotations

import os
import uuid
import psycopg
import pytest

from ueba.db import libpq_url, with_database
from ueba.launcher import service_available, start_service
from ueba.store.migrate import upgrade


def _create(server_url: str) -> tuple[str, str]:
    name = f"ueba_agents_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    upgrade(url)
    return name, url


def _drop(server_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="package")
def agents_database_url(server_url):
    """Events shipped here stay out of the session database other tests count in."""
    name, url = _create(server_url)
    yield url
    _drop(server_url, name)


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


@pytest.fixture(scope="package")
def ingest_service(agents_database_url, tmp_path_factory):
    if not service_available("ingest"):
        pytest.skip("services/ingest is not built yet")
    log = tmp_path_factory.mktemp("ingest") / "ingest.log"
    service = start_service("ingest", ingest_env(agents_database_url), log_path=log)
    yield service
    service.stop()


@pytest.fixture
def agents_pg(agents_database_url):
    with psycopg.connect(libpq_url(agents_database_url), autocommit=True) as conn:
        yield conn


def fresh_database(server_url: str):
    return _create(server_url)


def drop_database(server_url: str, name: str) -> None:
    _drop(server_url, name)
