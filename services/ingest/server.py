"""Composition root of the ingest service."""

from __future__ import annotations

import importlib.util
import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine

from services.ingest.maintenance import partition_upkeep
from services.ingest.pipeline import IngestPipeline
from services.ingest.servicer import IngestServicer
from services.ingest.settings import IngestSettings
from ueba.server import Registration, ServiceServer, bind, build_server
from ueba.store.partitions import EVENTS, PartitionCache
from ueba.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name
OTLP_SERVICE_NAME = "opentelemetry.proto.collector.logs.v1.LogsService"


def otlp_registration(pipeline: IngestPipeline, settings: IngestSettings) -> Registration | None:
    """The OTLP logs receiver, when services/ingest/otlp.py is part of this build."""
    if importlib.util.find_spec("services.ingest.otlp") is None:
        return None
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    from services.ingest.otlp import OtlpLogsServicer

    return Registration(
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server, OtlpLogsServicer(pipeline, settings), OTLP_SERVICE_NAME
    )


def create_server(settings: IngestSettings, engine: Engine) -> tuple[ServiceServer, int]:
    cache = PartitionCache(EVENTS)
    pipeline = IngestPipeline(settings, engine, cache)
    # Batches of all streams are written by this pool; its size matches the
    # pipeline's in-flight bound so waiting batches queue here, not in threads.
    executor = ThreadPoolExecutor(settings.max_inflight_batches, thread_name_prefix="ingest-batch")
    registrations = [
        Registration(ingest_pb2_grpc.add_IngestServiceServicer_to_server, IngestServicer(pipeline, settings, executor), SERVICE_NAME)
    ]
    otlp = otlp_registration(pipeline, settings)
    if otlp is not None:
        registrations.append(otlp)
    server, port = build_server(settings, registrations, background=[partition_upkeep(settings, engine, cache)])
    if settings.otlp_listen:
        if otlp is None:
            log.warning("UEBA_OTLP_LISTEN is set but this build has no OTLP receiver")
        # The same transport security as the main port (TLS, or plaintext where allowed).
        otlp_port = bind(server.grpc, settings.otlp_listen, settings, "UEBA_OTLP_LISTEN")
        log.info("OTLP listening", extra={"port": otlp_port})
    return server, port
