"""gRPC IngestService: one batch (IngestEvents) or a stream of batches (StreamEvents)."""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Executor, Future
from typing import Iterator

import grpc

from services.ingest.pipeline import IngestPipeline, InvalidBatch
from services.ingest.settings import IngestSettings
from ueba.callctx import current_caller
from ueba.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)

_END = object()


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, pipeline: IngestPipeline, settings: IngestSettings, executor: Executor):
        self.pipeline = pipeline
        self.settings = settings
        self.executor = executor

    def IngestEvents(self, request: ingest_pb2.EventBatch, context: grpc.ServicerContext) -> ingest_pb2.BatchAck:
        tenant = current_caller(self.settings.tenant).tenant
        return self.pipeline.ingest(tenant, request.events, request.batch_id)

    def StreamEvents(self, request_iterator: Iterator[ingest_pb2.EventBatch], context: grpc.ServicerContext):
        """Acks in the order batches arrived, each after its commit; the first bad batch ends the stream."""
        tenant = current_caller(self.settings.tenant).tenant
        window = threading.Semaphore(self.settings.stream_window)
        pending: queue.Queue = queue.Queue()
        done = threading.Event()
        reader = threading.Thread(
            target=self._read, args=(tenant, request_iterator, window, pending, done), name="ingest-stream-reader", daemon=True
        )
        reader.start()
        try:
            while (outcome := pending.get()) is not _END:
                if isinstance(outcome, InvalidBatch):
                    raise outcome
                yield outcome.result()
                window.release()
        finally:
            done.set()

    def _read(
        self,
        tenant: str,
        requests: Iterator[ingest_pb2.EventBatch],
        window: threading.Semaphore,
        pending: queue.Queue,
        done: threading.Event,
    ) -> None:
        """Reads the next batch only while the stream has a free slot in its window, so a fast agent
        is held back by HTTP/2 flow control rather than buffered here; puts each batch's Future
        (or the InvalidBatch that ends the stream) on `pending`."""
        try:
            while not done.is_set():
                if not window.acquire(timeout=0.5):
                    continue
                batch = next(requests, None)
                if batch is None:
                    break
                # Checked here so that a bad batch fails the stream before any later batch is written.
                try:
                    self.pipeline.check_batch(batch.events, batch.batch_id)
                except InvalidBatch as exc:
                    pending.put(exc)
                    break
                future: Future = self.executor.submit(self.pipeline.ingest, tenant, batch.events, batch.batch_id)
                pending.put(future)
        except Exception as exc:  # the client cancelled or the connection broke
            log.debug("stream ended while reading", exc_info=exc)
        finally:
            pending.put(_END)
