"""Every RPC of every service, callable generically with any token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2  # noqa: F401  (registers the OTLP service)

from ueba.v1 import cases_pb2, delivery_pb2, ingest_pb2, profiles_pb2, query_pb2, scorer_pb2  # noqa: F401  (register the services)

SERVICES = {
    "ingest": ("ueba.v1.IngestService", "opentelemetry.proto.collector.logs.v1.LogsService"),
    "profiles": ("ueba.v1.ProfileService",),
    "scorer": ("ueba.v1.ScorerService",),
    "query": ("ueba.v1.QueryService", "ueba.v1.CaseService"),
    "delivery": ("ueba.v1.DeliveryService",),
}


@dataclass(frozen=True)
class Rpc:
    service: str  # which process serves it: ingest, profiles, scorer, query, delivery
    path: str  # /package.Service/Method
    request_class: Any
    response_class: Any
    client_streaming: bool
    server_streaming: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]

    def __str__(self) -> str:
        return self.path


def all_rpcs() -> list[Rpc]:
    pool = descriptor_pool.Default()
    out = []
    for service, names in SERVICES.items():
        for name in names:
            for m in pool.FindServiceByName(name).methods:
                out.append(Rpc(
                    service, f"/{name}/{m.name}",
                    message_factory.GetMessageClass(m.input_type), message_factory.GetMessageClass(m.output_type),
                    m.client_streaming, m.server_streaming,
                ))
    return out


def call(channel: grpc.Channel, rpc: Rpc, request=None, token: str | None = None, timeout: float = 60.0,
         metadata: tuple = ()):
    """Calls `rpc` (a streaming request sends the one message); returns the response, or the list of streamed responses."""
    request = request if request is not None else rpc.request_class()
    md = tuple(metadata) + ((("authorization", f"Bearer {token}"),) if token else ())
    kwargs = dict(request_serializer=rpc.request_class.SerializeToString, response_deserializer=rpc.response_class.FromString)
    if rpc.client_streaming and rpc.server_streaming:
        return list(channel.stream_stream(rpc.path, **kwargs)(iter([request]), metadata=md, timeout=timeout))
    if rpc.client_streaming:
        return channel.stream_unary(rpc.path, **kwargs)(iter([request]), metadata=md, timeout=timeout)
    if rpc.server_streaming:
        return list(channel.unary_stream(rpc.path, **kwargs)(request, metadata=md, timeout=timeout))
    return channel.unary_unary(rpc.path, **kwargs)(request, metadata=md, timeout=timeout)


def code_of(channel: grpc.Channel, rpc: Rpc, request=None, token: str | None = None, **kw) -> grpc.StatusCode:
    try:
        call(channel, rpc, request, token, **kw)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


RPCS_BY_NAME = {r.name: r for r in all_rpcs()}
