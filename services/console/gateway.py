"""Calls a gRPC method for an HTTP request, the caller's bearer token passed on.

The console holds no credentials of its own: the services' interceptors decide
tenant and role from the token, exactly as for a gRPC client.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import grpc
from google.protobuf import json_format

from services.console.routes import Route
from ueba.client.channel import ChannelConfig


# gRPC metadata pairs passed on from the HTTP request (services/console/api.py forwarded_metadata)
Metadata = tuple[tuple[str, str], ...]


class BadBody(ValueError):
    """The JSON body is not the method's request message; the message names the field."""


class Backends:
    """One asyncio channel per service, opened inside the server's event loop."""

    def __init__(self, addresses: dict[str, str], config: ChannelConfig, timeout: float):
        self.addresses = addresses
        self.config = config
        self.timeout = timeout
        self.channels: dict[str, grpc.aio.Channel] = {}

    def open(self) -> None:
        credentials = self.config.credentials()
        options = self.config.options()
        for name, address in self.addresses.items():
            if credentials is None:
                self.channels[name] = grpc.aio.insecure_channel(address, options=options)
            else:
                self.channels[name] = grpc.aio.secure_channel(address, credentials, options=options)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        self.channels.clear()

    async def call(self, route: Route, body: Any, metadata: Metadata) -> dict[str, Any]:
        request = parse_request(route, body)
        method = self.channels[route.service].unary_unary(
            route.grpc_path,
            request_serializer=route.request_class.SerializeToString,
            response_deserializer=route.response_class.FromString,
        )
        response = await method(request, metadata=metadata, timeout=self.timeout)
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    async def stream_csv(self, route: Route, body: Any, metadata: Metadata) -> AsyncIterator[bytes]:
        """The chunks' bytes; the first is read before returning, so a refusal raises here."""
        request = parse_request(route, body)
        method = self.channels[route.service].unary_stream(
            route.grpc_path,
            request_serializer=route.request_class.SerializeToString,
            response_deserializer=route.response_class.FromString,
        )
        call = method(request, metadata=metadata, timeout=self.timeout)
        chunks = call.__aiter__()
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            first = None

        async def rest() -> AsyncIterator[bytes]:
            if first is not None:
                yield first.data
                async for chunk in chunks:
                    yield chunk.data

        return rest()


def parse_request(route: Route, body: Any):
    if not isinstance(body, dict):
        raise BadBody(f"the body must be a JSON object ({route.method.input_type.name})")
    try:
        return json_format.ParseDict(body, route.request_class())
    except (json_format.ParseError, ValueError, TypeError, OverflowError) as exc:
        raise BadBody(str(exc)) from None
