"""Fixtures of the agent-facing tests: a database of their own and a running ingest service."""

from __future__ import annotations

import psycopg
import pytest

from ueba.db import libpq_url
from ueba.launcher import start_service

from .helpers import ingest_env


@pytest.fixture(scope="package")
def agents_database_url(migrated_databases):
    """Events shipped here stay out of the session database other tests count in."""
    name, url = migrated_databases.new("ueba_agents")
    yield url
    migrated_databases.drop(name)


@pytest.fixture(scope="package")
def ingest_service(agents_database_url, tmp_path_factory):
    log = tmp_path_factory.mktemp("ingest") / "ingest.log"
    service = start_service("ingest", ingest_env(agents_database_url), log_path=log)
    yield service
    service.stop()


@pytest.fixture
def agents_pg(agents_database_url):
    with psycopg.connect(libpq_url(agents_database_url), autocommit=True) as conn:
        yield conn
