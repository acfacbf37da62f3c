"""Databases and service environments for the agent tests."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.support.databases import MigratedDatabases
from ueba.launcher import start_service

__all__ = ["ingest_and_profiles", "ingest_env"]


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


@contextmanager
def ingest_and_profiles(databases: MigratedDatabases, log_dir: Path) -> Iterator[tuple[str, str, str]]:
    """A fresh database with an ingest and a profiles service on it: (database URL, ingest address, profiles address)."""
    name, url = databases.new("ueba_agents")
    ingest = profiles = None
    try:
        ingest = start_service("ingest", ingest_env(url), log_path=log_dir / "ingest.log")
        profiles = start_service(
            "profiles",
            {"DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1", "UEBA_PROFILES_POLL_SECONDS": "0.2"},
            log_path=log_dir / "profiles.log",
        )
        yield url, ingest.address, profiles.address
    finally:
        for service in (profiles, ingest):
            if service is not None:
                service.stop()
        databases.drop(name)
