"""Composition root of the scorer service."""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from services.scorer.maintenance import partition_upkeep
from services.scorer.runs import Scorer, mark_interrupted
from services.scorer.schedule import Schedule, ScheduledScoring
from services.scorer.servicer import ScorerServicer
from services.scorer.settings import ScorerSettings
from ueba.anomaly_log import AnomalySink
from services.scorer.store import ScorerStore
from ueba.leases import LeaseManager, new_owner_id
from ueba.server import Registration, ServiceServer, build_server
from ueba.store.partitions import EVENT_SCORES, PartitionCache
from ueba.v1 import scorer_pb2, scorer_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = scorer_pb2.DESCRIPTOR.services_by_name["ScorerService"].full_name


def create_server(settings: ScorerSettings, engine: Engine) -> tuple[ServiceServer, int]:
    interrupted = mark_interrupted(engine)
    if interrupted:
        log.warning("marked interrupted scoring runs as failed", extra={"runs": interrupted})
    # One cache for the runs and the retention worker, which empties it when it drops days.
    partitions = PartitionCache(EVENT_SCORES)
    scorer = Scorer(engine, settings, AnomalySink(settings.anomaly_log), partitions)
    servicer = ScorerServicer(scorer, ScorerStore(engine), settings)
    leases = LeaseManager(engine, "scorer", new_owner_id("scorer"), settings.buckets, settings.lease_ttl_seconds,
                          settings.lease_heartbeat_seconds)
    plan = Schedule(settings.schedule_times(), settings.schedule_every())
    if plan:
        leases.ensure_pool()  # a replica with another UEBA_BUCKETS stops here (LeaseConfigError)
    schedule = ScheduledScoring(scorer, engine, settings.tenant, plan, leases)
    return build_server(
        settings,
        [Registration(scorer_pb2_grpc.add_ScorerServiceServicer_to_server, servicer, SERVICE_NAME)],
        background=[partition_upkeep(settings, engine, partitions), schedule],
    )
