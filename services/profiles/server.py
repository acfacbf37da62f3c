"""Composition root of the profiles service."""

from __future__ import annotations

from sqlalchemy import Engine

from services.profiles.buckets import EvaluatorLeases
from services.profiles.evaluator import ProfileEvaluator
from services.profiles.servicer import ProfileServicer
from services.profiles.settings import ProfilesSettings
from services.profiles.store import definitions
from ueba.leases import new_owner_id
from ueba.server import Registration, ServiceServer, build_server
from ueba.v1 import profiles_pb2, profiles_pb2_grpc

SERVICE_NAME = profiles_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name


def create_server(settings: ProfilesSettings, engine: Engine) -> tuple[ServiceServer, int]:
    """The ProfileService server with its evaluator as background work; not yet started."""
    if settings.seed_defaults:
        with engine.begin() as conn:
            definitions.seed_defaults(conn, settings.tenant)
    background = []
    if settings.evaluate:
        leases = EvaluatorLeases(engine, new_owner_id("profiles"), settings)
        leases.users.ensure_pool()  # a replica with another UEBA_BUCKETS stops here (LeaseConfigError)
        background.append(ProfileEvaluator(
            engine, poll_seconds=settings.poll_seconds, batch_events=settings.batch_events,
            start_from=settings.start_from, seed_defaults=settings.seed_defaults, ownership=leases,
            risk_window_days=settings.risk_window_days,
        ))
    servicer = ProfileServicer(settings, engine)
    return build_server(
        settings,
        [Registration(profiles_pb2_grpc.add_ProfileServiceServicer_to_server, servicer, SERVICE_NAME)],
        background=background,
    )
