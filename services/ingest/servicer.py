"""gRPC IngestService: one batch (IngestEvents) or a stream of batches (StreamEvents).

A stream keeps at most `stream_window` batches read but not yet acknowledged:
it reads the next batch only when a slot is free, so a fast agent is slowed to
the speed of the database by HTTP/2 flow control instead of filling memory.
Acks go back in the order the batches arrived, each after its commit.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Iterator

import grpc
import psycopg
import sqlalchemy.exc

from services.ingest.pipeline import IngestPipeline, InvalidBatch
from services.ingest.settings import IngestSettings
from ueba.callctx import current_caller
from ueba.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)

# Failures of the store rather than of the batch: the agent should resend later.
STORE_UNAVAILABLE = (psycopg.OperationalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError)
_END = object()


@contextmanager
def batch_statuses(context: grpc.ServicerContext, batch_id: str) -> Iterator[None]:
    """Ends the call with the status a failed batch deserves."""
    try:
        yield
    except InvalidBatch as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"batch {batch_id!r}: {exc}")
    except psycopg.DataError as exc:
        # Postgres refused data that passed validation: resending cannot help,
        # so the agent must hear of it rather than retry forever.
        log.exception("batch refused by the store")
        reason = exc.diag.message_primary or str(exc)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"batch {batch_id!r}: refused by the event store: {reason}")
    except STORE_UNAVAILABLE:
        log.exception("store unavailable")
        context.abort(grpc.StatusCode.UNAVAILABLE, "event store unavailable; resend unacknowledged batches later")



class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, pipeline: IngestPipeline, settings: IngestSettings, executor: Executor):
        self.pipeline = pipeline
        self.settings = settings
        self.executor = executor

    def IngestEvents(self, request: ingest_pb2.EventBatch, context: grpc.ServicerContext) -> ingest_pb2.BatchAck:
        tenant = current_caller(self.settings.tenant).tenant
        with batch_statuses(context, request.batch_id):
            return self.pipeline.ingest(tenant, request.events, request.batch_id)

    def StreamEvents(self, request_iterator: Iterator[ingest_pb2.EventBatch], context: grpc.ServicerContext):
        tenant = current_caller(self.settings.tenant).tenant
        window = threading.Semaphore(self.settings.stream_window)
        pending: queue.Queue = queue.Queue()
        done = threading.Event()

        def read() -> None:
            try:
                while not done.is_set():
                    if not window.acquire(timeout=0.5):
                        continue
                    try:
                        batch = next(request_iterator)
                    except StopIteration:
                        break
                    # Checked here so that a bad batch fails the stream before
                    # any later batch is written.
                    try:
                        self.pipeline.check_batch(batch.events)
                    except InvalidBatch as exc:
                        pending.put((batch.batch_id, exc))
                        break
                    pending.put((batch.batch_id, self.executor.submit(self._ingest, tenant, batch)))
            except Exception as exc:  # the client cancelled or the connection broke
                log.debug("stream ended while reading", exc_info=exc)
            finally:
                pending.put(_END)

        reader = threading.Thread(target=read, name="ingest-stream-reader", daemon=True)
        reader.start()
        try:
            while True:
                item = pending.get()
                if item is _END:
                    return
                batch_id, outcome = item  # a Future of the ack, or the InvalidBatch that ends the stream
                with batch_statuses(context, batch_id):
                    if isinstance(outcome, InvalidBatch):
                        raise outcome
                    ack = outcome.result()
                yield ack
                window.release()
        finally:
            done.set()

    def _ingest(self, tenant: str, batch: ingest_pb2.EventBatch) -> ingest_pb2.BatchAck:
        return self.pipeline.ingest(tenant, batch.events, batch.batch_id)
