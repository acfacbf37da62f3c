"""Server bootstrap shared by every service.

`build_server` gives a gRPC server with the standard health service,
reflection, structured call logs, Prometheus metrics and message limits;
`serve` runs one until SIGTERM or SIGINT, then drains in-flight calls.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram, start_http_server

from ueba.callctx import Caller, reset_caller, set_caller
from ueba.settings import BaseSettings

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
def _observed(method: str, context: grpc.ServicerContext, default_tenant: str):
    """Sets the caller, then counts, times and logs the call however it ends."""
    token = set_caller(Caller(tenant=default_tenant))
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
        reset_caller(token)


class ObservabilityInterceptor(grpc.ServerInterceptor):
    """Counts, times and logs every call, and sets the caller for servicers."""

    def __init__(self, default_tenant: str):
        self.default_tenant = default_tenant

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return handler
        tenant = self.default_tenant

        def unary_response(behavior):
            def call(request, context):
                with _observed(method, context, tenant):
                    return behavior(request, context)

            return call

        def stream_response(behavior):
            def call(request, context):
                with _observed(method, context, tenant):
                    yield from behavior(request, context)

            return call

        kinds = (
            ("unary_unary", grpc.unary_unary_rpc_method_handler, unary_response),
            ("unary_stream", grpc.unary_stream_rpc_method_handler, stream_response),
            ("stream_unary", grpc.stream_unary_rpc_method_handler, unary_response),
            ("stream_stream", grpc.stream_stream_rpc_method_handler, stream_response),
        )
        for attr, make_handler, wrap in kinds:
            behavior = getattr(handler, attr)
            if behavior is not None:
                return make_handler(wrap(behavior), handler.request_deserializer, handler.response_serializer)
        return handler


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

    def __init__(self, server: grpc.Server, health_servicer: health.HealthServicer, background: Iterable[Any] = ()):
        self.grpc = server
        self.health = health_servicer
        self.background = list(background)

    def start(self) -> None:
        self.grpc.start()
        for worker in self.background:
            worker.start()

    def stop(self, grace: float | None = None) -> threading.Event:
        self.health.enter_graceful_shutdown()
        for worker in self.background:
            worker.stop()
        return self.grpc.stop(grace)


def build_server(
    settings: BaseSettings,
    registrations: Iterable[Registration],
    interceptors: Iterable[grpc.ServerInterceptor] = (),
    max_workers: int = 32,
    background: Iterable[Any] = (),
) -> tuple[ServiceServer, int]:
    """A server bound to settings.listen, not yet started; returns (server, port)."""
    registrations = list(registrations)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[ObservabilityInterceptor(settings.tenant), *interceptors],
        options=server_options(settings),
        maximum_concurrent_rpcs=max_workers * 4,
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for reg in registrations:
        reg.add(reg.servicer, server)
        health_servicer.set(reg.name, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    names = [reg.name for reg in registrations] + [health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(settings.listen)
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    return ServiceServer(server, health_servicer, background), port


def start_metrics(port: int) -> int | None:
    """Serves Prometheus metrics on their own port; returns it (None when disabled)."""
    if port < 0:
        return None
    httpd, _thread = start_http_server(port)
    return httpd.server_port


def serve(name: str, settings: BaseSettings, server: ServiceServer, port: int) -> None:
    """Runs until SIGTERM/SIGINT, then reports NOT_SERVING and drains in-flight calls."""
    metrics_port = start_metrics(settings.metrics_port)
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
    server.stop(settings.drain_seconds).wait()
    log.info("stopped")
