"""Databases and service environments for the agent tests."""

from __future__ import annotations

from ueba.store.databases import drop_database, new_database
from ueba.store.migrate import upgrade

__all__ = ["drop_database", "fresh_database", "ingest_env"]


def fresh_database(server_url: str) -> tuple[str, str]:
    """A new migrated database: (name, URL)."""
    name, url = new_database(server_url, "ueba_agents")
    upgrade(url)
    return name, url


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
