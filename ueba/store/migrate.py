"""Applies the store's Alembic migrations (`ueba migrate`, the chart's migration Job) and checks
that a database's schema is one this code can run on."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import OperationalError

from ueba.db import sqlalchemy_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Key of the transaction-level advisory lock every migrator takes first, so
# two at once run one after the other instead of racing on alembic_version.
MIGRATION_LOCK = 0x75656261_6D696772  # "uebamigr"
LOCK_NOT_AVAILABLE = "55P03"

log = logging.getLogger(__name__)


class SchemaTooOld(RuntimeError):
    """The database lacks migrations this code needs (`ueba migrate` has not run)."""


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads", lock_timeout_seconds: float = 0, attempts: int = 1) -> None:
    """Migrates to `revision` under the migration lock.

    With lock_timeout_seconds, each DDL statement waits at most that long for a
    table lock (old pods' queries hold them) and the whole migration is retried,
    up to `attempts` times, instead of queueing every new query behind it.
    """
    for attempt in range(1, attempts + 1):
        try:
            _locked(url, lambda cfg: command.upgrade(cfg, revision), lock_timeout_seconds)
            return
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE or attempt == attempts:
                raise
            pause = min(30.0, 2.0 * attempt)
            log.warning("migration waited too long for a table lock; retrying",
                        extra={"attempt": attempt, "attempts": attempts, "retry_in_seconds": pause})
            time.sleep(pause)


def downgrade(url: str, revision: str) -> None:
    _locked(url, lambda cfg: command.downgrade(cfg, revision), 0)


def _locked(url: str, run, lock_timeout_seconds: float) -> None:
    # One transaction for the lock and every migration (Postgres DDL is
    # transactional): the lock is held until the last revision is committed.
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            if lock_timeout_seconds:
                conn.execute(text("SELECT set_config('lock_timeout', :ms, true)"),
                             {"ms": f"{int(lock_timeout_seconds * 1000)}ms"})
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            run(cfg)
    finally:
        engine.dispose()


def require_current_schema(url: str) -> str:
    """The database's revision when it has every migration of this code; SchemaTooOld otherwise.

    A revision this code does not know is a newer release's, which keeps old
    code working (migrations only add), so it passes.
    """
    script = ScriptDirectory.from_config(alembic_config(url))
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_heads()
    finally:
        engine.dispose()
    needed = set(script.get_heads())
    if not current:
        raise SchemaTooOld(f"the database has no UEBA schema; this release needs {', '.join(sorted(needed))}: run `ueba migrate`")
    try:
        reached = {rev.revision for rev in script.iterate_revisions(current, "base")}
    except RevisionError:
        return ", ".join(current)  # a newer release's revision
    missing = needed - reached
    if missing:
        raise SchemaTooOld(f"the database schema is at {', '.join(current)}, older than this release needs"
                           f" ({', '.join(sorted(missing))}): run `ueba migrate`")
    return ", ".join(current)
