"""Composition root of the scorer service."""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from services.scorer.runs import Scorer, mark_interrupted
from services.scorer.schedule import ScheduledScoring
from services.scorer.servicer import ScorerServicer
from services.scorer.settings import ScorerSettings
from services.scorer.sink import AnomalySink
from services.scorer.store import ScorerStore
from ueba.server import Registration, ServiceServer, build_server
from ueba.v1 import scorer_pb2, scorer_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = scorer_pb2.DESCRIPTOR.services_by_name["ScorerService"].full_name


def create_server(settings: ScorerSettings, engine: Engine) -> tuple[ServiceServer, int]:
    interrupted = mark_interrupted(engine)
    if interrupted:
        log.warning("marked interrupted scoring runs as failed", extra={"runs": interrupted})
    scorer = Scorer(engine, settings, AnomalySink(settings.anomaly_log))
    servicer = ScorerServicer(scorer, ScorerStore(engine), settings)
    schedule = ScheduledScoring(scorer, engine, settings.tenant, settings.schedule_times())
    return build_server(
        settings,
        [Registration(scorer_pb2_grpc.add_ScorerServiceServicer_to_server, servicer, SERVICE_NAME)],
        background=[schedule],
    )
