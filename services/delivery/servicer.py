"""The DeliveryService gRPC API: deliveries and their dead letters, and putting those back."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Engine

from services.delivery import store
from services.delivery.settings import DeliverySettings
from ueba import paging
from ueba.callctx import current_caller
from ueba.errors import InvalidArgument, check_text
from ueba.timestamps import to_proto
from ueba.v1 import delivery_pb2, delivery_pb2_grpc

MAX_PAGE = 1000


def delivery_message(row) -> delivery_pb2.Delivery:
    return delivery_pb2.Delivery(
        outbox_id=row.outbox_id, destination=row.destination, status=row.status, event_id=str(row.event_id),
        kind=row.kind, action=row.action, entity_type=row.entity_type, entity=row.entity, risk_score=row.risk_score,
        attempts=row.attempts, last_error=row.last_error or "", created_at=to_proto(row.outbox_created_at),
        next_attempt_at=to_proto(row.next_attempt_at) if row.status == store.PENDING else None,
        delivered_at=to_proto(row.delivered_at),
    )


class DeliveryServicer(delivery_pb2_grpc.DeliveryServiceServicer):
    def __init__(self, engine: Engine, settings: DeliverySettings):
        self.engine = engine
        self.settings = settings

    def _tenant(self) -> str:
        return current_caller(self.settings.tenant).tenant

    def ListDeliveries(self, request, context):
        if request.status and request.status not in store.STATUSES:
            raise InvalidArgument(f"status: {request.status!r} is not one of {', '.join(store.STATUSES)} (or empty)")
        destination = check_text("destination", request.destination)
        size = paging.page_size(request.page_size, MAX_PAGE, default=100)
        fp = paging.fingerprint("deliveries", request.status, destination)
        after = None
        if request.page_token:
            after = tuple(paging.decode(fp, request.page_token, (int, str)).key)
        with self.engine.connect() as conn:
            rows = store.listed(conn, self._tenant(), request.status, destination, size + 1, after)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            token = paging.encode(fp, paging.PageToken([last.outbox_id, last.destination], datetime.now(timezone.utc)))
        return delivery_pb2.ListDeliveriesResponse(deliveries=[delivery_message(r) for r in rows], next_page_token=token)

    def RetryDeliveries(self, request, context):
        destination = check_text("destination", request.destination)
        if len(request.outbox_ids) > MAX_PAGE:
            raise InvalidArgument(f"outbox_ids: at most {MAX_PAGE} at a time")
        with self.engine.begin() as conn:
            n = store.requeue(conn, self._tenant(), destination, list(request.outbox_ids))
        return delivery_pb2.RetryDeliveriesResponse(requeued=n)
