"""Composition helpers every service's entry point uses."""

from __future__ import annotations

import atexit
import logging

from sqlalchemy import Engine

from ueba.db import create_db_engine
from ueba.embedded import EmbeddedPostgres
from ueba.settings import BaseSettings
from ueba.store.migrate import SchemaTooOld, require_current_schema

log = logging.getLogger(__name__)


def resolve_database_url(settings: BaseSettings) -> str:
    """DATABASE_URL when set, else the embedded server in the data folder (started if needed)."""
    if settings.database_url:
        return settings.database_url
    embedded = EmbeddedPostgres(settings.data_dir)
    url = embedded.start()
    atexit.register(embedded.stop)
    return url


def engine_for(settings: BaseSettings, service: str) -> Engine:
    """The service's engine, once the database has the schema this release needs; else the process exits."""
    url = resolve_database_url(settings)
    # A service that migrates at start (local runs) checks nothing yet.
    if not getattr(settings, "auto_migrate", False):
        try:
            require_current_schema(url)
        except SchemaTooOld as exc:
            log.critical("refusing to start: %s", exc, extra={"reason": "schema_too_old"})
            raise SystemExit(3) from exc
    return create_db_engine(url, settings.db_pool_size, application_name=f"ueba-{service}")
