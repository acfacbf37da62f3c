"""Client of the ingest service: streams events in batches and survives broken streams.

    with IngestClient("127.0.0.1:50051", batch_size=1000) as client:
        totals = client.send(events)

`send` keeps a bounded window of sent-but-unacknowledged batches. When the
stream breaks (server restart, connection reset, UNAVAILABLE) it reconnects
with exponential back-off and resends every unacknowledged batch under the
same batch id; the server's idempotency turns anything that had been committed
into duplicates, so nothing is lost and nothing is stored twice.

A server with a maximum connection age (UEBA_MAX_CONNECTION_AGE_SECONDS) sends
GOAWAY when a connection reaches it and closes the connection, streams and
all, once its grace has passed (the stream then fails with UNAVAILABLE "max
connection age"). gRPC Python does not show the GOAWAY to a call, but the
channel leaves READY at once while the stream goes on. `send` watches for
that: it sends no further batch on the stream, half-closes it, takes the
acknowledgements of what it had sent (the server acknowledges everything it
read, then ends the call with OK), and carries on without back-off on a new
stream, which the channel opens on a new connection, so to any replica behind
the address. Nothing is resent unless the grace runs out first.
"""

from __future__ import annotations

import collections
import itertools
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import grpc

from ueba.client.channel import ChannelConfig
from ueba.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)

# Codes after which resending can succeed; anything else is the caller's problem.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class IngestError(RuntimeError):
    """The events could not be delivered; `code` is the last gRPC status code, when there was one."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None):
        super().__init__(message)
        self.code = code


@dataclass
class SendTotals:
    sent: int = 0  # events read from the iterable and sent (resends not counted again)
    accepted: int = 0  # newly stored
    duplicates: int = 0  # stored before (or committed before a reconnect), or repeated in a batch
    rejected: int = 0
    # Rejections with `index` the event's position in the whole iterable.
    rejections: list[ingest_pb2.Rejection] = field(default_factory=list)
    batches: int = 0
    reconnects: int = 0
    resent_batches: int = 0
    # Streams ended early, with nothing lost, because the server was closing the connection.
    rebalances: int = 0


@dataclass
class _Batch:
    seq: int
    first_index: int  # position of the batch's first event in the whole iterable
    message: ingest_pb2.EventBatch
    sends: int = 0


class _Attempt:
    """One stream; its request generator stops once sending is stopped (the attempt is over, or the server is closing)."""

    def __init__(self) -> None:
        self.stopped = False
        self.server_closing = False


class _ConnectionWatch:
    """Tells the current listener when the channel stops being READY: the server sent GOAWAY, or the connection broke."""

    def __init__(self, channel: grpc.Channel):
        self._lock = threading.Lock()
        self._ready = False
        self._listener: Callable[[], None] | None = None
        self._channel = channel
        channel.subscribe(self._changed, try_to_connect=False)

    def _changed(self, connectivity: grpc.ChannelConnectivity) -> None:
        with self._lock:
            was_ready, self._ready = self._ready, connectivity == grpc.ChannelConnectivity.READY
            listener = self._listener if was_ready and not self._ready else None
        if listener is not None:
            listener()

    def listen(self, listener: Callable[[], None] | None) -> None:
        with self._lock:
            self._listener = listener

    def close(self) -> None:
        self._channel.unsubscribe(self._changed)


class _SendState:
    def __init__(self, events: Iterable[common_pb2.Event], batch_size: int, window: int):
        self.source: Iterator[common_pb2.Event] = iter(events)
        self.batch_size = batch_size
        self.window = window
        self.run_id = uuid.uuid4().hex[:12]
        self.cond = threading.Condition()
        self._reading = threading.Lock()
        self.unacked: collections.deque[_Batch] = collections.deque()
        self.exhausted = False
        self.source_error: BaseException | None = None
        self.totals = SendTotals()
        self._seq = 0

    def next_to_send(self, attempt: _Attempt, last_seq: int) -> _Batch | None:
        """Blocks until a batch may be sent on this attempt; None when there is nothing more."""
        while True:
            with self.cond:
                if attempt.stopped:
                    return None
                for batch in self.unacked:
                    if batch.seq > last_seq:
                        return batch
                if self.exhausted:
                    return None
                if len(self.unacked) >= self.window:
                    self.cond.wait()
                    continue
            self._pull()

    def _pull(self) -> None:
        # The source is read outside `cond`: a slow source (a paced or tailing
        # one) must not hold up acknowledgements meanwhile. `_reading` keeps
        # the reads, and the order of the batches they make, one at a time.
        with self._reading:
            with self.cond:
                if self.exhausted or len(self.unacked) >= self.window:
                    return
            try:
                chunk = list(itertools.islice(self.source, self.batch_size))
            except BaseException as exc:  # the caller's iterable failed: stop and report it from send()
                with self.cond:
                    self.source_error = exc
                    self.exhausted = True
                    self.cond.notify_all()
                return
            with self.cond:
                if not chunk:
                    self.exhausted = True
                else:
                    batch_id = f"{self.run_id}-{self._seq:08d}"
                    self.unacked.append(_Batch(self._seq, self.totals.sent, ingest_pb2.EventBatch(batch_id=batch_id, events=chunk)))
                    self._seq += 1
                    self.totals.sent += len(chunk)
                self.cond.notify_all()

    def acknowledge(self, ack: ingest_pb2.BatchAck) -> int:
        """Counts one ack; returns the number of events in the acknowledged batch."""
        with self.cond:
            if not self.unacked or self.unacked[0].message.batch_id != ack.batch_id:
                expected = self.unacked[0].message.batch_id if self.unacked else None
                raise IngestError(f"acknowledgement for batch {ack.batch_id!r}, expected {expected!r}")
            batch = self.unacked.popleft()
            totals = self.totals
            totals.batches += 1
            totals.accepted += ack.accepted
            totals.duplicates += ack.duplicates
            totals.rejected += ack.rejected
            for r in ack.rejections:
                totals.rejections.append(
                    ingest_pb2.Rejection(index=batch.first_index + r.index, field=r.field, reason=r.reason, event_id=r.event_id)
                )
            self.cond.notify_all()
            return len(batch.message.events)

    def stop_sending(self, attempt: _Attempt, server_closing: bool = False) -> None:
        with self.cond:
            if server_closing and not attempt.stopped:
                attempt.server_closing = True
            attempt.stopped = True
            self.cond.notify_all()

    def done(self) -> bool:
        with self.cond:
            return self.exhausted and not self.unacked


class IngestClient:
    """Streams events to IngestService.StreamEvents, resending what was not acknowledged.

    `credentials` (grpc.ssl_channel_credentials(...)) switches to TLS; `token`
    adds `authorization: Bearer <token>`; `metadata` adds any other pairs.
    `channel` (ueba.client.channel.ChannelConfig) gives TLS, the server name to
    verify and the token in one, as the command line builds them.
    """

    def __init__(
        self,
        address: str,
        batch_size: int = 1000,
        window: int = 8,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        max_attempts: int = 10,
        initial_backoff: float = 0.25,
        max_backoff: float = 8.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        channel: ChannelConfig | None = None,
    ):
        if batch_size < 1 or window < 1:
            raise ValueError("batch_size and window must be at least 1")
        if channel is not None:
            credentials = credentials or channel.credentials()
            token = token or channel.token
        self.address = address
        self.batch_size = batch_size
        self.window = window
        self.credentials = credentials
        self.metadata = tuple(metadata) + ((("authorization", f"Bearer {token}"),) if token else ())
        self.max_attempts = max_attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # Reconnect about as eagerly as send() retries, not after gRPC's default minute-scale back-off.
            ("grpc.initial_reconnect_backoff_ms", int(initial_backoff * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(initial_backoff * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(max_backoff * 1000)),
            ("grpc.keepalive_time_ms", 60_000),
            *(channel.options() if channel is not None else ()),
        ]
        self._channel: grpc.Channel | None = None
        self._watch: _ConnectionWatch | None = None
        self._stub: ingest_pb2_grpc.IngestServiceStub | None = None
        self._connect()

    def _connect(self) -> None:
        self.close()
        if self.credentials is not None:
            self._channel = grpc.secure_channel(self.address, self.credentials, options=self._options)
        else:
            self._channel = grpc.insecure_channel(self.address, options=self._options)
        self._watch = _ConnectionWatch(self._channel)
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._channel)

    def send_batch(self, events: Sequence[common_pb2.Event], batch_id: str = "", timeout: float | None = 60.0) -> ingest_pb2.BatchAck:
        """One batch over the unary IngestEvents call (no retries)."""
        assert self._stub is not None
        return self._stub.IngestEvents(
            ingest_pb2.EventBatch(batch_id=batch_id, events=events), metadata=self.metadata, timeout=timeout
        )

    def send(self, events: Iterable[common_pb2.Event], progress: Callable[[int], None] | None = None) -> SendTotals:
        """Streams every event; returns once all are acknowledged.

        `progress(n)` is called with the number of events of each acknowledged
        batch (tqdm's `update` fits). Raises IngestError when the server refuses
        a batch (INVALID_ARGUMENT, ...) or stays unreachable for `max_attempts`
        consecutive attempts.
        """
        state = _SendState(events, self.batch_size, self.window)
        failures = 0
        while True:
            attempt = _Attempt()
            acked_this_attempt = 0
            error: grpc.RpcError | None = None
            assert self._stub is not None and self._watch is not None
            self._watch.listen(lambda attempt=attempt: state.stop_sending(attempt, server_closing=True))
            call = self._stub.StreamEvents(self._requests(state, attempt), metadata=self.metadata)
            try:
                for ack in call:
                    n = state.acknowledge(ack)
                    acked_this_attempt += 1
                    failures = 0
                    if progress is not None:
                        progress(n)
            except grpc.RpcError as exc:
                error = exc
            except BaseException:
                call.cancel()
                raise
            finally:
                self._watch.listen(None)
                state.stop_sending(attempt)
            if state.source_error is not None:
                raise state.source_error
            if error is None and state.done():
                return state.totals
            if error is None and attempt.server_closing:
                # Everything sent was acknowledged: go on at once; the channel
                # opens the next stream on a new connection.
                state.totals.rebalances += 1
                log.info("ingest connection closing; continuing on a new stream", extra={"unacked": len(state.unacked)})
                continue
            code = error.code() if error is not None else None
            if code is not None and code not in RETRYABLE:
                raise IngestError(f"ingest refused: {code.name}: {error.details()}", code)
            failures += 1
            if failures > self.max_attempts:
                raise IngestError(f"ingest unreachable after {self.max_attempts} attempts: {code}", code)
            delay = min(self.max_backoff, self.initial_backoff * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
            log.warning(
                "ingest stream broken; reconnecting",
                extra={"code": code.name if code else None, "unacked": len(state.unacked), "delay": round(delay, 2)},
            )
            time.sleep(delay)
            state.totals.reconnects += 1
            self._connect()

    @staticmethod
    def _requests(state: _SendState, attempt: _Attempt) -> Iterator[ingest_pb2.EventBatch]:
        last_seq = -1
        while True:
            batch = state.next_to_send(attempt, last_seq)
            if batch is None:
                return
            last_seq = batch.seq
            if batch.sends:
                state.totals.resent_batches += 1
            batch.sends += 1
            yield batch.message

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> "IngestClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
