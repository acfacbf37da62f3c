"""The scorer's upkeep of the `event_scores` day partitions: tomorrow's created ahead, days past
UEBA_SCORE_RETENTION_DAYS dropped, at start and every hour.

Runs create the days they write themselves; a day ahead spares the first run
after midnight the DDL (and its wait for the other replicas' runs).
"""

from __future__ import annotations

from datetime import date
from typing import Callable

from sqlalchemy import Engine

from services.scorer.settings import ScorerSettings
from ueba.store.partitions import PartitionCache, utc_today
from ueba.store.upkeep import PartitionUpkeep

DAYS_AHEAD = 1
INTERVAL_SECONDS = 3600.0


def partition_upkeep(settings: ScorerSettings, engine: Engine, cache: PartitionCache,
                     today: Callable[[], date] = utc_today) -> PartitionUpkeep:
    return PartitionUpkeep(engine, cache, days_ahead=DAYS_AHEAD, retention_days=settings.score_retention_days,
                           interval=INTERVAL_SECONDS, today=today)
