"""Shared fixtures: a private database per test session on a real Postgres.

DATABASE_URL, when set, names the server to use; otherwise an embedded server
from pgserver runs under .data/test-pg. Either way the session creates its own
database, migrates it, and drops it at the end, so runs never collide.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from tests.support.databases import MigratedDatabases
from tests.support.processes import ServiceProcesses
from ueba.db import create_db_engine, libpq_url
from ueba.embedded import EmbeddedPostgres
from ueba.store.databases import drop_database, new_database
from ueba.store.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def server_url():
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    embedded = EmbeddedPostgres(ROOT / ".data" / "test")
    yield embedded.start()
    embedded.stop()


@pytest.fixture(scope="session")
def database_url(server_url):
    """A migrated database of this session's own."""
    name, url = new_database(server_url, "ueba_test")
    upgrade(url)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="session")
def migrated_databases(server_url) -> MigratedDatabases:
    """Makes migrated databases for single tests quickly (`.new(prefix)`, `.drop(name)`)."""
    databases = MigratedDatabases(server_url)
    yield databases
    databases.close()


@pytest.fixture
def fresh_database_url(migrated_databases):
    """A migrated database for one test, for tests that must start empty."""
    name, url = migrated_databases.new("ueba_t")
    yield url
    migrated_databases.drop(name)


@pytest.fixture
def fresh_engine(fresh_database_url) -> Engine:
    """An engine on a database of this test's own."""
    eng = create_db_engine(fresh_database_url, pool_size=6)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def engine(database_url) -> Engine:
    eng = create_db_engine(database_url, pool_size=4)
    yield eng
    eng.dispose()


@pytest.fixture
def pg(database_url):
    """A psycopg connection (autocommit) to the session database."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"real log datasets not found at {DATASETS} (they live outside the project)")
    return DATASETS


@pytest.fixture
def service_processes(tmp_path):
    """Starts service processes (`.start(name, env)`); any still running after the test is killed."""
    processes = ServiceProcesses(tmp_path)
    yield processes
    processes.stop_all()
