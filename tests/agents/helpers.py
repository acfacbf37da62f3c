"""Databases and service environments for the agent tests."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.support.databases import MigratedDatabases
from ueba.launcher import start_service

__all__ = ["ingest_and_profiles", "ingest_env", "score_linux_months"]


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


def score_linux_months(url: str) -> None:
    """One scoring run over the months of loghub's Linux_2k.log (June and July, shipped as 2025)."""
    from datetime import datetime, timezone

    from services.scorer.runs import Scorer
    from services.scorer.settings import ScorerSettings
    from ueba.anomaly_log import AnomalySink
    from ueba.db import create_db_engine

    engine = create_db_engine(url, pool_size=2)
    try:
        settings = ScorerSettings.from_env({"DATABASE_URL": url, "UEBA_SCORING_SCHEDULE": "off"})
        run = Scorer(engine, settings, AnomalySink("off")).run(
            "default", datetime(2025, 6, 1, tzinfo=timezone.utc), datetime(2025, 8, 1, tzinfo=timezone.utc))
        assert run.status == "succeeded", run
    finally:
        engine.dispose()
