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
from concurrent.futures import Executor, Future
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


def _refused(exc: psycopg.DataError) -> str:
    """Why Postgres refused a batch that passed validation (a gap in the checks, not a transient fault)."""
    return f"refused by the event store: {exc.diag.message_primary or exc}"



class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, pipeline: IngestPipeline, settings: IngestSettings, executor: Executor):
        self.pipeline = pipeline
        self.settings = settings
        self.executor = executor

    def IngestEvents(self, request: ingest_pb2.EventBatch, context: grpc.ServicerContext) -> ingest_pb2.BatchAck:
        tenant = current_caller(self.settings.tenant).tenant
        try:
            return self.pipeline.ingest(tenant, request.events, request.batch_id)
        except InvalidBatch as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"batch {request.batch_id!r}: {exc}")
        except psycopg.DataError as exc:
            log.exception("batch refused by the store")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"batch {request.batch_id!r}: {_refused(exc)}")
        except STORE_UNAVAILABLE:
            log.exception("store unavailable")
            context.abort(grpc.StatusCode.UNAVAILABLE, "event store unavailable; resend the batch later")

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
                batch_id, outcome = item
                try:
                    if isinstance(outcome, InvalidBatch):
                        raise outcome
                    ack = outcome.result() if isinstance(outcome, Future) else outcome
                except InvalidBatch as exc:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"batch {batch_id!r}: {exc}")
                except psycopg.DataError as exc:
                    # Resending cannot help: the agent must hear of it rather than retry forever.
                    log.exception("batch refused by the store")
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"batch {batch_id!r}: {_refused(exc)}")
                except STORE_UNAVAILABLE:
                    log.exception("store unavailable")
                    context.abort(grpc.StatusCode.UNAVAILABLE, "event store unavailable; resend unacknowledged batches")
                yield ack
                window.release()
        finally:
            done.set()

    def _ingest(self, tenant: str, batch: ingest_pb2.EventBatch) -> ingest_pb2.BatchAck:
        return self.pipeline.ingest(tenant, batch.events, batch.batch_id)
