"""Composition helpers every service's entry point uses."""

from __future__ import annotations

import atexit

from sqlalchemy import Engine

from ueba.db import create_db_engine
from ueba.embedded import EmbeddedPostgres
from ueba.settings import BaseSettings


def resolve_database_url(settings: BaseSettings) -> str:
    """DATABASE_URL when set, else the embedded server in the data folder (started if needed)."""
    if settings.database_url:
        return settings.database_url
    embedded = EmbeddedPostgres(settings.data_dir)
    url = embedded.start()
    atexit.register(embedded.stop)
    return url


def engine_for(settings: BaseSettings, service: str) -> Engine:
    return create_db_engine(resolve_database_url(settings), settings.db_pool_size, application_name=f"ueba-{service}")
