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


class StreamWindow:
    """Batches of one stream read but not yet acknowledged, bounded in number and in bytes.

    The next batch is read only while both are under their bound (the first always is), so a
    fast agent is held back by HTTP/2 flow control rather than buffered here.
    """

    def __init__(self, max_batches: int, max_bytes: int):
        self.max_batches = max_batches
        self.max_bytes = max_bytes
        self.batches = 0
        self.bytes = 0
        self._changed = threading.Condition()

    def wait_for_room(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.batches < self.max_batches and self.bytes < self.max_bytes, timeout)

    def take(self, size: int) -> None:
        with self._changed:
            self.batches += 1
            self.bytes += size

    def give_back(self, size: int) -> None:
        with self._changed:
            self.batches -= 1
            self.bytes -= size
            self._changed.notify_all()


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
        window = StreamWindow(self.settings.stream_window, self.settings.stream_max_bytes)
        pending: queue.Queue = queue.Queue()
        done = threading.Event()
        reader = threading.Thread(
            target=self._read, args=(tenant, request_iterator, window, pending, done), name="ingest-stream-reader", daemon=True
        )
        reader.start()
        try:
            while (item := pending.get()) is not _END:
                outcome, size = item
                if isinstance(outcome, InvalidBatch):
                    raise outcome
                yield outcome.result()
                window.give_back(size)
        finally:
            done.set()

    def _read(
        self,
        tenant: str,
        requests: Iterator[ingest_pb2.EventBatch],
        window: StreamWindow,
        pending: queue.Queue,
        done: threading.Event,
    ) -> None:
        """Reads batches while the window has room; puts (the Future of each batch's ack, or the
        InvalidBatch that ends the stream; its size) on `pending`."""
        try:
            while not done.is_set():
                if not window.wait_for_room(timeout=0.5):
                    continue
                batch = next(requests, None)
                if batch is None:
                    break
                size = batch.ByteSize()
                window.take(size)
                # Checked here so that a bad batch fails the stream before any later batch is written.
                try:
                    self.pipeline.check_batch(batch.events, batch.batch_id)
                except InvalidBatch as exc:
                    pending.put((exc, size))
                    break
                future: Future = self.executor.submit(self.pipeline.ingest, tenant, batch.events, batch.batch_id)
                pending.put((future, size))
        except Exception as exc:  # the client cancelled or the connection broke
            log.debug("stream ended while reading", exc_info=exc)
        finally:
            pending.put(_END)
