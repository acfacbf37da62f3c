"""Server bootstrap shared by every service.

`build_server` gives a gRPC server with the standard health service (List
included), reflection (v1 and v1alpha), structured call logs, Prometheus
metrics, message and stream limits, TLS and bearer-token authentication
(docs/security.md); `bind` adds a further port with the same transport
security; `serve` runs one until SIGTERM or SIGINT, then drains in-flight
calls within a hard bound.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from prometheus_client import Counter, Histogram, start_http_server

from ueba.auth.authenticator import AuthError, TokenAuthenticator
from ueba.auth.ratelimit import RateLimiter
from ueba.auth.roles import OPEN_PREFIXES, missing_methods
from ueba.auth.tls import server_credentials
from ueba.callctx import Caller, named_actor, reset_caller, set_caller
from ueba.errors import mapped_to_status
from ueba.settings import BaseSettings, check_plaintext_allowed
from ueba.streams import OpenStream, StreamGuard, StreamLimits, StreamRefused

log = logging.getLogger(__name__)

REQUESTS = Counter("ueba_grpc_requests_total", "gRPC calls handled", ["method", "code"])
LATENCY = Histogram(
    "ueba_grpc_request_seconds",
    "gRPC call duration",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


@dataclass
class Registration:
    """One servicer to add: `add(servicer, server)` and its full service name."""

    add: Callable[[Any, grpc.Server], None]
    servicer: Any
    name: str


@contextmanager
def _observed(method: str, context: grpc.ServicerContext):
    """Counts, times and logs the call however it ends."""
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        failure = exc
        raise
    finally:
        elapsed = time.perf_counter() - started
        code = context.code()
        if code is None:
            code_name = "OK" if failure is None else "UNKNOWN"
        else:
            code_name = code.name
        REQUESTS.labels(method, code_name).inc()
        LATENCY.labels(method).observe(elapsed)
        if code_name == "UNKNOWN" and failure is not None:
            log.error("call failed", exc_info=failure, extra={"method": method})
        else:
            log.debug("call", extra={"method": method, "code": code_name, "seconds": round(elapsed, 4)})


class CallInterceptor(grpc.ServerInterceptor):
    """Every call: counted, timed and logged; authenticated and authorised; its caller set for servicers;
    domain errors turned into statuses (ueba/errors.py).

    Without an authenticator (UEBA_AUTH=off) every call is the default
    tenant's admin, acting as the name its metadata gives (ueba/callctx.py). With one, the bearer token decides tenant, actor and role,
    the method must allow the role (ueba/auth/roles.py), and each request, and
    each message of a client stream, spends one unit of the token's rate.
    Health checking and reflection stay open. Every streaming call, open ones
    included, is admitted and watched by the stream guard (ueba/streams.py).
    """

    def __init__(self, default_tenant: str, authenticator: TokenAuthenticator | None = None, streams: StreamGuard | None = None):
        self.default_tenant = default_tenant
        self.authenticator = authenticator
        self.streams = streams

    def _caller(self, method: str, context: grpc.ServicerContext) -> tuple[Caller, str | None]:
        if self.authenticator is None:
            try:
                return Caller(tenant=self.default_tenant, actor=named_actor(context.invocation_metadata())), None
            except ValueError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            return self.authenticator.caller(method, context.invocation_metadata())
        except AuthError as exc:
            if exc.code != grpc.StatusCode.UNAVAILABLE:
                log.info("call refused", extra={"method": method, "code": exc.code.name, "peer": context.peer()})
            context.abort(exc.code, exc.message)

    def _metered(self, requests: Iterator, key: str, context: grpc.ServicerContext) -> Iterator:
        """A client stream whose every message after the first spends one unit of the caller's rate."""
        assert self.authenticator is not None
        first = True
        for request in requests:
            if not first:
                try:
                    self.authenticator.admit(key)
                except AuthError as exc:
                    context.abort(exc.code, exc.message)
            first = False
            yield request

    def _open_stream(self, method: str, context: grpc.ServicerContext, key: str | None, anonymous: bool) -> OpenStream | None:
        """Admits a streaming call within the stream limits (None when the server has none)."""
        if self.streams is None:
            return None
        recheck = None
        if key is not None and self.authenticator is not None:
            authenticator, metadata = self.authenticator, context.invocation_metadata()
            recheck = lambda: authenticator.recheck(method, metadata)  # noqa: E731
        try:
            stream = self.streams.open(method, context, key, anonymous, recheck)
        except StreamRefused as exc:
            log.info("stream refused", extra={"method": method, "peer": context.peer(), "reason": str(exc)})
            context.abort(StreamRefused.code, str(exc))
        context.add_callback(lambda: self.streams.close(stream))
        return stream

    def _open_method(self, handler, method: str):
        """Health and reflection need no token, but their streams count against the limits."""
        if not (handler.request_streaming or handler.response_streaming) or self.streams is None:
            return handler
        if handler.stream_stream is not None:  # reflection
            behavior = handler.stream_stream

            def reflect(requests, context):
                stream = self._open_stream(method, context, None, anonymous=True)
                try:
                    yield from behavior(stream.watched(requests, self.streams.clock), context)
                finally:
                    self.streams.close(stream)

            return grpc.stream_stream_rpc_method_handler(reflect, handler.request_deserializer, handler.response_serializer)
        behavior = handler.unary_stream  # health Watch: answers from callbacks, holding no thread

        def watch(request, context, send_response_callback=None):
            self._open_stream(method, context, None, anonymous=True)
            if send_response_callback is None:
                return behavior(request, context)
            return behavior(request, context, send_response_callback=send_response_callback)

        watch.experimental_non_blocking = getattr(behavior, "experimental_non_blocking", False)
        return grpc.unary_stream_rpc_method_handler(watch, handler.request_deserializer, handler.response_serializer)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        if method.startswith(OPEN_PREFIXES):
            return self._open_method(handler, method)
        parse = _parser(method, handler.request_deserializer)
        streaming = handler.request_streaming or handler.response_streaming

        def prepare(request, context, client_streaming):
            """Admits the call, then parses its request (or wraps its request stream)."""
            caller, key = self._caller(method, context)
            stream = self._open_stream(method, context, key, anonymous=False) if streaming else None
            if client_streaming:
                if stream is not None:
                    request = stream.watched(request, self.streams.clock)
                request = (parse(raw, context) for raw in request)
                if key is not None:
                    request = self._metered(request, key, context)
            else:
                request = parse(request, context)
            return caller, request, stream

        def finish(stream: OpenStream | None) -> None:
            if stream is not None:
                self.streams.close(stream)

        def unary_response(behavior, client_streaming):
            def call(request, context):
                with _observed(method, context):
                    caller, request, stream = prepare(request, context, client_streaming)
                    token = set_caller(caller)
                    try:
                        with mapped_to_status(context, method):
                            return behavior(request, context)
                    finally:
                        reset_caller(token)
                        finish(stream)

            return call

        def stream_response(behavior, client_streaming):
            def call(request, context):
                with _observed(method, context):
                    caller, request, stream = prepare(request, context, client_streaming)
                    token = set_caller(caller)
                    try:
                        with mapped_to_status(context, method):
                            yield from behavior(request, context)
                    finally:
                        reset_caller(token)
                        finish(stream)

            return call

        kinds = (
            ("unary_unary", grpc.unary_unary_rpc_method_handler, unary_response, False),
            ("unary_stream", grpc.unary_stream_rpc_method_handler, stream_response, False),
            ("stream_unary", grpc.stream_unary_rpc_method_handler, unary_response, True),
            ("stream_stream", grpc.stream_stream_rpc_method_handler, stream_response, True),
        )
        for attr, make_handler, wrap, client_streaming in kinds:
            behavior = getattr(handler, attr)
            if behavior is not None:
                # Requests arrive as bytes and are parsed after admission, so
                # an unauthenticated caller costs no parsing and a malformed
                # message (invalid UTF-8 in a string field) gets
                # INVALID_ARGUMENT rather than gRPC's INTERNAL.
                return make_handler(wrap(behavior, client_streaming), None, handler.response_serializer)
        return handler


def _parser(method: str, deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes, grpc.ServicerContext], Any]:
    def parse(raw: bytes, context: grpc.ServicerContext):
        if deserialize is None:
            return raw
        try:
            return deserialize(raw)
        except Exception as exc:  # DecodeError, or whatever a custom deserializer raises
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request of {method} is not a valid message: {exc}")

    return parse


class ListedHealthServicer(health.HealthServicer):
    """The library's health servicer, which has no List, with List answered from its status map."""

    def List(self, request: health_pb2.HealthListRequest, context: grpc.ServicerContext) -> health_pb2.HealthListResponse:
        with self._lock:  # the library keeps its statuses in _server_status under this lock
            statuses = dict(self._server_status)
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses.items()}
        )


# The library serves only v1alpha; v1 has the same messages on the wire, so
# one servicer answers both names.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def add_reflection(service_names: Iterable[str], server: grpc.Server) -> None:
    servicer = reflection.ReflectionServicer([*service_names, reflection.SERVICE_NAME])
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": v1}),))


def server_options(settings: BaseSettings) -> list[tuple[str, int]]:
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Fail fast rather than keep a dead agent's stream forever.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    if settings.max_connection_age_seconds > 0:
        options += [
            ("grpc.max_connection_age_ms", settings.max_connection_age_seconds * 1000),
            ("grpc.max_connection_age_grace_ms", int(settings.drain_seconds * 1000)),
        ]
    return options


class ServiceServer:
    """A bound gRPC server with its health servicer and the background work it owns.

    `background` objects have start() and stop(); they run while the server
    serves (the profiles evaluator, the scorer's schedule) and stop before the
    server drains.
    """

    def __init__(self, server: grpc.Server, health_servicer: health.HealthServicer, background: Iterable[Any] = (),
                 health_only: grpc.Server | None = None):
        self.grpc = server
        self.health = health_servicer
        self.background = list(background)
        self.health_only = health_only

    def start(self) -> None:
        if self.health_only is not None:
            self.health_only.start()
        self.grpc.start()
        for worker in self.background:
            worker.start()

    def stop(self, grace: float | None = None) -> threading.Event:
        """Refuses new calls at once, lets in-flight calls finish within `grace`, stops background work."""
        self.health.enter_graceful_shutdown()
        # Stop taking calls first: a background worker that is slow to stop
        # (a scoring run) must not keep the server accepting new work.
        stopped = self.grpc.stop(grace)
        for worker in self.background:
            worker.stop()
        if self.health_only is not None:
            # Answers NOT_SERVING until the main server has drained.
            health_only = self.health_only
            threading.Thread(target=lambda: stopped.wait() and health_only.stop(None), daemon=True).start()
        return stopped


def bind(server: grpc.Server, address: str, settings: BaseSettings, variable: str = "UEBA_LISTEN") -> int:
    """Adds a listening port: TLS when configured, else plaintext where allowed; returns the port."""
    credentials = server_credentials(settings)
    if credentials is None:
        check_plaintext_allowed(variable, address, settings)
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {address} ({variable})")
    return port


def token_authenticator(settings: BaseSettings) -> TokenAuthenticator | None:
    """The authenticator UEBA_AUTH asks for, on a small engine of its own; None when auth is off."""
    if settings.auth != "tokens":
        return None
    from ueba.bootstrap import resolve_database_url
    from ueba.db import create_db_engine

    engine = create_db_engine(resolve_database_url(settings), pool_size=2, application_name="ueba-auth")
    limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    return TokenAuthenticator(engine, settings.auth_cache_seconds, limiter)


def build_server(
    settings: BaseSettings,
    registrations: Iterable[Registration],
    interceptors: Iterable[grpc.ServerInterceptor] = (),
    max_workers: int = 32,
    background: Iterable[Any] = (),
    authenticator: TokenAuthenticator | None = None,
) -> tuple[ServiceServer, int]:
    """A server bound to settings.listen, not yet started; returns (server, port).

    `authenticator` overrides the one UEBA_AUTH asks for (tests inject theirs).
    """
    registrations = list(registrations)
    if authenticator is None:
        authenticator = token_authenticator(settings)
    if authenticator is not None:
        missing = missing_methods([reg.name for reg in registrations])
        if missing:
            raise RuntimeError(f"no roles are defined for {', '.join(missing)} (ueba/auth/roles.py)")
    streams = StreamGuard(stream_limits(settings, max_workers))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[CallInterceptor(settings.tenant, authenticator, streams), *interceptors],
        options=server_options(settings),
        maximum_concurrent_rpcs=max_workers * 4,
    )
    health_servicer = ListedHealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for reg in registrations:
        reg.add(reg.servicer, server)
        health_servicer.set(reg.name, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    add_reflection([reg.name for reg in registrations] + [health.SERVICE_NAME], server)
    port = bind(server, settings.listen, settings)
    health_only = health_server(settings.health_listen, health_servicer) if settings.health_listen else None
    return ServiceServer(server, health_servicer, [streams, *background], health_only), port


def health_server(address: str, health_servicer: health.HealthServicer) -> grpc.Server:
    """A plaintext server of `health_servicer` alone, for probes that cannot speak TLS (the kubelet's
    gRPC probe): it carries no data and no other service, so it needs neither TLS nor a token."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="grpc-health"),
        # Watch streams hold no thread; the bound keeps an open port from piling them up.
        maximum_concurrent_rpcs=16,
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address} (UEBA_HEALTH_LISTEN)")
    log.info("health listening", extra={"port": port})
    return server


def stream_limits(settings: BaseSettings, max_workers: int) -> StreamLimits:
    """The stream bounds of a server with `max_workers` threads: by default a quarter of them
    (at least one) stays free for unary calls however many streams are open."""
    per_server = settings.max_streams or max(1, max_workers - max(1, max_workers // 4))
    return StreamLimits(
        per_server=per_server,
        per_caller=settings.max_streams_per_token,
        anonymous=settings.max_anonymous_streams,
        idle_seconds=settings.stream_idle_seconds,
        recheck_seconds=settings.stream_recheck_seconds,
    )


def metrics_host(settings: BaseSettings) -> str:
    """UEBA_METRICS_HOST, else the host the gRPC server listens on (so a loopback service keeps its metrics local)."""
    if settings.metrics_host:
        return settings.metrics_host
    return settings.listen.rpartition(":")[0].strip("[]")


def start_metrics(settings: BaseSettings) -> int | None:
    """Serves Prometheus metrics on their own port; returns it (None when disabled)."""
    if settings.metrics_port < 0:
        return None
    httpd, _thread = start_http_server(settings.metrics_port, addr=metrics_host(settings))
    return httpd.server_port


def serve(name: str, settings: BaseSettings, server: ServiceServer, port: int) -> None:
    """Runs until SIGTERM/SIGINT, then reports NOT_SERVING and drains in-flight calls."""
    metrics_port = start_metrics(settings)
    server.start()
    stopping = threading.Event()

    def request_stop(signum, _frame):
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info("listening", extra={"port": port, "metrics_port": metrics_port})
    # The line `ueba up`, the tests and the benchmarks wait for to learn the ports.
    print(f"READY {name} port={port} metrics_port={metrics_port}", flush=True)
    stopping.wait()
    exit_after(settings.drain_seconds + DRAIN_MARGIN_SECONDS)
    server.stop(settings.drain_seconds).wait()
    log.info("stopped")


# After the drain, gRPC has cancelled every call, but a handler blocked in the
# database (a slow export) keeps its thread, and the interpreter waits for it
# at exit: the bound on a stop is only kept by ending the process.
DRAIN_MARGIN_SECONDS = 3.0


def exit_after(seconds: float) -> threading.Timer:
    """Ends the process `seconds` from now if it is still running then, whatever its threads are doing."""

    def end() -> None:
        busy = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon)
        log.warning("drain bound reached; exiting with calls still running", extra={"seconds": seconds, "threads": busy})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(0)

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    timer.start()
    return timer
