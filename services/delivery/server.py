"""Composition root of the delivery service."""

from __future__ import annotations

from sqlalchemy import Engine

from services.delivery.servicer import DeliveryServicer
from services.delivery.settings import DeliverySettings
from services.delivery.worker import DestinationWorker, Router, Upkeep
from ueba.leases import new_owner_id
from ueba.server import Registration, ServiceServer, build_server
from ueba.v1 import delivery_pb2, delivery_pb2_grpc

SERVICE_NAME = delivery_pb2.DESCRIPTOR.services_by_name["DeliveryService"].full_name


def create_server(settings: DeliverySettings, engine: Engine) -> tuple[ServiceServer, int]:
    destinations = settings.destinations()
    owner = new_owner_id("delivery")
    workers = [DestinationWorker(engine, dest, owner, settings.lease_seconds, settings.batch, settings.poll_seconds)
               for dest in destinations]
    return build_server(
        settings,
        [Registration(delivery_pb2_grpc.add_DeliveryServiceServicer_to_server, DeliveryServicer(engine, settings),
                      SERVICE_NAME)],
        background=[Router(engine, destinations, settings.batch, settings.poll_seconds), *workers,
                    Upkeep(engine, destinations, settings.retention_days)],
    )
