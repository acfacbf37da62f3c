"""The API's routes: every method of the exposed gRPC services, found in their descriptors.

A method added to a .proto is an HTTP route without a line here: `POST
/api/v1/{service}/{Method}` with the request message as the JSON body.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from ueba.v1 import cases_pb2, profiles_pb2, query_pb2, scorer_pb2

# short name in the path -> the gRPC service
SERVICES = {
    "query": query_pb2.DESCRIPTOR.services_by_name["QueryService"],
    "profiles": profiles_pb2.DESCRIPTOR.services_by_name["ProfileService"],
    "scorer": scorer_pb2.DESCRIPTOR.services_by_name["ScorerService"],
    "cases": cases_pb2.DESCRIPTOR.services_by_name["CaseService"],
}
CSV_CHUNK = "ueba.v1.CsvChunk"


@dataclass(frozen=True)
class Route:
    service: str
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/api/v1/{self.service}/{self.method.name}"

    @property
    def grpc_path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def request_class(self):
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_class(self):
        return message_factory.GetMessageClass(self.method.output_type)

    @property
    def streams_csv(self) -> bool:
        return self.method.server_streaming and self.method.output_type.full_name == CSV_CHUNK


def all_routes() -> list[Route]:
    routes = []
    for short, service in SERVICES.items():
        for method in service.methods:
            if method.client_streaming or (method.server_streaming and method.output_type.full_name != CSV_CHUNK):
                continue  # no HTTP/JSON form yet; none exists in these services
            routes.append(Route(short, method))
    return routes
