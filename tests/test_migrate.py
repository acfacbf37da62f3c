"""`ueba migrate` under concurrency and lock contention, and the schema check services start with."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from ueba.store.databases import drop_database, new_database
from ueba.db import libpq_url
from ueba.store.migrate import SchemaTooOld, require_current_schema, upgrade

BEFORE_0010 = "0009_scorer_baselines"


@pytest.fixture
def empty_url(server_url):
    name, url = new_database(server_url, "ueba_mig")
    yield url
    drop_database(server_url, name)


def ueba(*args: str, url: str, timeout: float = 120) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.Popen([sys.executable, "-m", "ueba.cli.main", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def revisions(url: str) -> list[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        return [r for (r,) in conn.execute("SELECT version_num FROM alembic_version")]


def test_two_migrations_at_once_both_succeed(empty_url):
    runs = [ueba("migrate", url=empty_url) for _ in range(2)]
    results = [finish(p) for p in runs]
    for code, out, err in results:
        assert code == 0, err
        assert "migrations applied" in out
    assert sorted(revisions(empty_url)) == sorted(require_current_schema(empty_url).split(", "))


class _OnRetry(logging.Handler):
    """Calls `action` once, when the migration logs that it will retry."""

    def __init__(self, action):
        super().__init__(logging.WARNING)
        self.action = action

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage() and self.action is not None:
            self.action, action = None, self.action
            action()


def test_a_migration_blocked_by_a_reader_gives_up_its_locks_and_retries(empty_url, caplog):
    upgrade(empty_url, BEFORE_0010)
    reader = psycopg.connect(libpq_url(empty_url))
    reader.execute("SELECT count(*) FROM event_scores")  # an old pod's query: holds ACCESS SHARE until it ends
    try:
        with pytest.raises(OperationalError, match="lock timeout"):
            upgrade(empty_url, lock_timeout_seconds=0.2, attempts=1)
        assert revisions(empty_url) == [BEFORE_0010]  # nothing half-applied

        # The reader ends while the migration is between attempts: the next attempt goes through.
        # It ends on the migration's word that it will retry, not after a fixed delay: on a slow
        # machine the earlier migrations can outlast any delay, and then none would retry.
        ends_reader = _OnRetry(reader.rollback)
        logging.getLogger("ueba.store.migrate").addHandler(ends_reader)
        try:
            with caplog.at_level(logging.WARNING, logger="ueba.store.migrate"):
                upgrade(empty_url, lock_timeout_seconds=0.2, attempts=5)
        finally:
            logging.getLogger("ueba.store.migrate").removeHandler(ends_reader)
    finally:
        reader.close()
    assert any("retrying" in r.getMessage() for r in caplog.records)
    require_current_schema(empty_url)


# The newest migration: migrations are numbered, so the last file is the head the services need.
LATEST = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "ueba" / "store" / "migrations" / "versions").glob("0*.py"))[-1]


def test_schema_check_names_what_is_missing(empty_url):
    with pytest.raises(SchemaTooOld, match="no UEBA schema"):
        require_current_schema(empty_url)
    upgrade(empty_url, BEFORE_0010)
    with pytest.raises(SchemaTooOld, match=rf"at 0009_scorer_baselines, older than this release needs \(.*{LATEST}"):
        require_current_schema(empty_url)
    upgrade(empty_url)
    assert LATEST in require_current_schema(empty_url)
    # A newer release's revision: old pods keep running during its rollout.
    with psycopg.connect(libpq_url(empty_url)) as conn:
        conn.execute("DELETE FROM alembic_version")
        conn.execute("INSERT INTO alembic_version VALUES ('0099_from_a_newer_release')")
    assert require_current_schema(empty_url) == "0099_from_a_newer_release"


def test_a_service_refuses_to_start_on_an_older_schema(empty_url):
    upgrade(empty_url, BEFORE_0010)
    env = {**os.environ, "DATABASE_URL": empty_url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1"}
    result = subprocess.run([sys.executable, "-m", "services.ingest"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (refusal,) = [line for line in lines if line.get("reason") == "schema_too_old"]
    assert refusal["level"] == "CRITICAL" and refusal["service"] == "ingest"
    assert "older than this release needs" in refusal["message"] and "ueba migrate" in refusal["message"]


def test_wait_returns_once_another_process_has_migrated(empty_url):
    code, _, err = finish(ueba("migrate", "--wait", "1", url=empty_url))
    assert code == 1 and "no UEBA schema" in err
    waiter = ueba("migrate", "--wait", "60", url=empty_url)
    time.sleep(1.5)
    assert waiter.poll() is None, "the wait returned before any migration"
    upgrade(empty_url)
    code, out, _ = finish(waiter)
    assert code == 0 and out.startswith("schema ready at") and LATEST in out
