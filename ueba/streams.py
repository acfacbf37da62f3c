"""Limits on streaming calls, so that open streams cannot take every worker thread of a server.

A streaming call holds a worker thread for as long as it is open. `StreamGuard` admits one only
within three bounds (per server, per caller, and for callers without a token), ends a stream
that waits longer than the idle time for its client's next message, and checks the token of
every open stream again every few seconds, ending it once the token is revoked. Bounds and
defaults: docs/security.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import grpc

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class StreamLimits:
    per_server: int  # streams open at once in the process
    per_caller: int  # streams open at once per token
    anonymous: int  # streams open at once without a token (reflection, health Watch)
    idle_seconds: float  # longest wait for a client's next message; 0: no limit
    recheck_seconds: float  # how often an open stream's token is checked again


class StreamRefused(Exception):
    """The call would exceed a stream limit; answered RESOURCE_EXHAUSTED."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


@dataclass(eq=False)
class OpenStream:
    method: str
    caller: str  # the token id, ANONYMOUS, or "" when authentication is off
    context: grpc.ServicerContext
    # Checks the caller again; returns None while allowed, else (status, message) to end the stream with.
    recheck: Callable[[], tuple[grpc.StatusCode, str] | None] | None
    checked_at: float
    waiting_since: float | None = None  # while the server waits for the client's next message
    ended: bool = False

    def watched(self, requests: Iterator[Any], clock: Callable[[], float]) -> Iterator[Any]:
        """The client's messages; the time spent waiting for each is what the idle limit measures."""
        while True:
            self.waiting_since = clock()
            try:
                request = next(requests)
            except StopIteration:
                return
            finally:
                self.waiting_since = None
            yield request


def end_call(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    """Ends a call from outside its handler's thread, with a status the client can act on.

    ServicerContext offers only cancel() (the client sees CANCELLED). The core call under it
    takes a status; a call of another shape (a test double) falls back to cancel().
    """
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        call.cancel(code.value[0], message)
    except Exception:  # not a core call: the plain cancel
        context.cancel()


@dataclass
class StreamGuard:
    limits: StreamLimits
    clock: Callable[[], float] = time.monotonic
    _open: set[OpenStream] = field(default_factory=set)
    _per_caller: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    def open(self, method: str, context: grpc.ServicerContext, caller: str | None, anonymous: bool = False,
             recheck: Callable[[], tuple[grpc.StatusCode, str] | None] | None = None) -> OpenStream:
        """Admits a stream, or raises StreamRefused naming the bound it would exceed.

        `caller` is the token id (None when authentication is off: only the server-wide bound
        applies); `anonymous` marks a call that needs no token (reflection, health).
        """
        key = ANONYMOUS if anonymous else caller or ""
        with self._lock:
            if len(self._open) >= self.limits.per_server:
                raise StreamRefused(f"{self.limits.per_server} streams are open on this server (UEBA_MAX_STREAMS); retry later")
            if anonymous and self._per_caller[key] >= self.limits.anonymous:
                raise StreamRefused(
                    f"{self.limits.anonymous} streams without a token are open (UEBA_MAX_ANONYMOUS_STREAMS); retry later"
                )
            if not anonymous and caller is not None and self._per_caller[key] >= self.limits.per_caller:
                raise StreamRefused(
                    f"this token has {self.limits.per_caller} streams open (UEBA_MAX_STREAMS_PER_TOKEN); close one or retry later"
                )
            stream = OpenStream(method, key, context, recheck, self.clock())
            self._open.add(stream)
            self._per_caller[key] += 1
        return stream

    def close(self, stream: OpenStream) -> None:
        """Forgets a stream; closing twice is harmless (the call's end and its handler both close it)."""
        with self._lock:
            if stream in self._open:
                self._open.remove(stream)
                self._per_caller[stream.caller] -= 1
                if not self._per_caller[stream.caller]:
                    del self._per_caller[stream.caller]

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def sweep(self) -> None:
        """Ends streams idle too long and streams whose token no longer admits them."""
        now = self.clock()
        with self._lock:
            streams = list(self._open)
        for stream in streams:
            if stream.ended:
                continue
            verdict = self._verdict(stream, now)
            if verdict is not None:
                stream.ended = True
                code, message = verdict
                log.info("stream ended", extra={"method": stream.method, "code": code.name, "reason": message})
                end_call(stream.context, code, message)

    def _verdict(self, stream: OpenStream, now: float) -> tuple[grpc.StatusCode, str] | None:
        idle = self.limits.idle_seconds
        waiting_since = stream.waiting_since
        if idle > 0 and waiting_since is not None and now - waiting_since >= idle:
            return (
                grpc.StatusCode.UNAVAILABLE,
                f"stream idle for {idle:g} s (UEBA_STREAM_IDLE_SECONDS); open a new one when there is more to send",
            )
        if stream.recheck is not None and now - stream.checked_at >= self.limits.recheck_seconds:
            stream.checked_at = now
            return stream.recheck()
        return None

    def start(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="stream-guard", daemon=True)
            self._watcher.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        period = max(0.05, min(x for x in (self.limits.idle_seconds, self.limits.recheck_seconds, 1.0) if x > 0) / 4)
        while not self._stop.wait(period):
            try:
                self.sweep()
            except Exception:  # the watcher must outlive any one stream's trouble
                log.exception("stream guard sweep failed")
