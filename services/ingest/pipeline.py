"""The per-batch ingest logic every front end shares (our gRPC API, OTLP).

`IngestPipeline.ingest(tenant, events)` validates, normalises, deduplicates and
commits one batch, and returns its acknowledgement only after the commit. A
bounded number of batches are written at once per process; callers beyond the
bound wait, which is the back-pressure agents feel.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Sequence

import psycopg
from sqlalchemy import Engine

from services.ingest import metrics
from services.ingest.group_commit import GroupCommit
from services.ingest.normalise import AddressBook, GeoDatabase
from services.ingest.prepare import EventPreparer, Limits, PreparedBatch
from services.ingest.settings import IngestSettings
from services.ingest.store import EventStore
from ueba.errors import STORE_UNAVAILABLE, InvalidArgument, Unavailable
from ueba.names import user_name_normaliser
from ueba.store.partitions import PartitionCache
from ueba.v1 import common_pb2, ingest_pb2

log = logging.getLogger(__name__)


# Most events one transaction takes from the batches waiting for a writer: two of the batches
# agents usually send (5,000), so a writer's COPY of a group overlaps the preparation of the next.
GROUP_ROWS = 10_000


class InvalidBatch(InvalidArgument):
    """The batch as a whole is unacceptable (empty, too large, refused by the store)."""


def limits_from(settings: IngestSettings) -> Limits:
    return Limits(
        max_future_seconds=settings.max_future_seconds,
        max_past_days=settings.max_past_days,
        retention_days=settings.retention_days,
        max_field_length=settings.max_field_length,
        max_attributes=settings.max_attributes,
    )


def preparer_from(settings: IngestSettings) -> EventPreparer:
    geo = GeoDatabase(settings.geoip_database) if settings.geoip_database else None
    return EventPreparer(
        limits_from(settings),
        user_name_normaliser(settings.user_name_mode),
        AddressBook(settings.networks(), geo),
    )


class IngestPipeline:
    def __init__(self, settings: IngestSettings, engine: Engine, partition_cache: PartitionCache | None = None):
        self.settings = settings
        self.preparer = preparer_from(settings)
        self.store = EventStore(engine, partition_cache)
        self.writer = GroupCommit(self.store, settings.writers, max_rows=GROUP_ROWS)
        self._slots = threading.BoundedSemaphore(settings.max_inflight_batches)

    def check_batch(self, events: Sequence[common_pb2.Event], batch_id: str = "") -> None:
        if not events:
            raise InvalidBatch(f"batch {batch_id!r}: events: the batch is empty")
        if len(events) > self.settings.max_batch_size:
            raise InvalidBatch(
                f"batch {batch_id!r}: events: {len(events)} events in one batch, "
                f"at most {self.settings.max_batch_size} (UEBA_MAX_BATCH_SIZE)"
            )

    def ingest(self, tenant: str, events: Sequence[common_pb2.Event], batch_id: str = "") -> ingest_pb2.BatchAck:
        """The batch's acknowledgement, after its commit; InvalidBatch or Unavailable (resend later) when not stored."""
        self.check_batch(events, batch_id)
        with self._slots:
            metrics.INFLIGHT.inc()
            started = time.perf_counter()
            try:
                prepared = self.preparer.prepare(tenant, events)
                accepted = self._write(tenant, prepared, batch_id)
            finally:
                metrics.INFLIGHT.dec()
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        duplicates = prepared.duplicates + len(prepared.rows) - accepted
        rejected = len(prepared.rejections)
        metrics.BATCHES.inc()
        metrics.ACCEPTED.inc(accepted)
        metrics.DUPLICATES.inc(duplicates)
        metrics.REJECTED.inc(rejected)
        return ingest_pb2.BatchAck(
            batch_id=batch_id,
            accepted=accepted,
            duplicates=duplicates,
            rejected=rejected,
            rejections=prepared.rejections,
        )

    def _write(self, tenant: str, prepared: PreparedBatch, batch_id: str) -> int:
        try:
            return self.writer.write(tenant, prepared)
        except psycopg.DataError as exc:
            # Postgres refused data that passed validation: resending cannot
            # help, so the agent must hear of it rather than retry forever.
            log.exception("batch refused by the store")
            reason = exc.diag.message_primary or str(exc)
            raise InvalidBatch(f"batch {batch_id!r}: refused by the event store: {reason}") from exc
        except STORE_UNAVAILABLE as exc:
            log.warning("event store unavailable", exc_info=exc)
            raise Unavailable("event store unavailable; resend unacknowledged batches later") from exc

    def close(self) -> None:
        self.writer.close()
        self.preparer.addresses.close()
