"""The console's parts without sockets: schemas from descriptors, status mapping, settings, body checks."""

from __future__ import annotations

import grpc
import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from services.console import problems
from services.console.api import create_app, forwarded_metadata
from services.console.gateway import Backends
from services.console.schema import message_schemas
from services.console.settings import ConsoleSettings
from ueba.client.channel import ChannelConfig
from ueba.settings import SettingsError
from ueba.v1 import common_pb2, query_pb2


def test_schemas_follow_the_proto3_json_mapping():
    schemas = message_schemas([query_pb2.Summary.DESCRIPTOR, common_pb2.Event.DESCRIPTOR])
    summary = schemas["ueba.v1.Summary"]["properties"]
    assert summary["total_anomalies"]["type"] == "string"  # int64 as a decimal string
    assert summary["by_risk_level"] == {"type": "array", "items": {"$ref": "#/components/schemas/ueba.v1.Count"}}
    assert summary["range"] == {"$ref": "#/components/schemas/ueba.v1.TimeRange"}
    assert schemas["ueba.v1.TimeRange"]["properties"]["start"]["format"] == "date-time"
    event = schemas["ueba.v1.Event"]["properties"]
    assert event["attributes"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert event["type"]["enum"][0] == "EVENT_TYPE_UNSPECIFIED"
    assert "google.protobuf.Timestamp" not in schemas


def test_every_grpc_status_maps_to_an_error_status():
    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        status = problems.HTTP_STATUS.get(code, 500)
        assert 400 <= status < 600
    response = problems.problem(404, "user 'alicia': no such user", "NOT_FOUND")
    assert response.media_type == "application/problem+json" and response.status_code == 404


def test_settings_refuse_a_wildcard_origin_and_a_bad_address():
    with pytest.raises(SettingsError, match="UEBA_CONSOLE_CORS_ORIGINS"):
        ConsoleSettings.from_env({"UEBA_CONSOLE_CORS_ORIGINS": "*"})
    with pytest.raises(SettingsError, match="UEBA_CONSOLE_QUERY_ADDRESS"):
        ConsoleSettings.from_env({"UEBA_CONSOLE_QUERY_ADDRESS": "query"})
    assert ConsoleSettings.from_env({}).listen == "127.0.0.1:8080"


@pytest.fixture
def client():
    app = create_app(Backends({"query": "127.0.0.1:9", "profiles": "127.0.0.1:9", "scorer": "127.0.0.1:9"},
                              ChannelConfig(), 0.5), "off")
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize("body, field", [
    (b"[1, 2]", "JSON object"), (b'{"page_size": "many"}', "page_size"), (b'{"nope": 1}', "nope"),
    (b'{"filter": {"risk_levels": ["SEVERE"]}}', "risk_levels"), (b"{", "not JSON"),
])
def test_a_body_that_is_not_the_request_is_400_naming_what(client, body, field):
    response = client.post("/api/v1/query/ListAnomalies", content=body)
    assert response.status_code == 400 and response.headers["content-type"] == "application/problem+json"
    assert field in response.json()["detail"]


def test_a_service_that_is_down_is_503_and_a_non_ascii_token_401(client):
    response = client.post("/api/v1/query/GetSummary", json={})
    assert response.status_code == 503 and response.json()["code"] == "UNAVAILABLE"
    response = client.post("/api/v1/query/GetSummary", json={}, headers={"Authorization": "Bearer caf\u00e9".encode("latin-1")})
    assert response.status_code == 401


def test_the_token_and_a_named_actor_are_passed_on_as_metadata():
    request = Request({"type": "http", "headers": [(b"authorization", b"Bearer abc"), (b"x-ueba-actor", b"carol")]})
    assert forwarded_metadata(request) == (("authorization", "Bearer abc"), ("x-ueba-actor", "carol"))
    assert forwarded_metadata(Request({"type": "http", "headers": []})) == ()


def test_an_actor_gRPC_metadata_cannot_carry_is_400(client):
    response = client.post("/api/v1/query/GetSummary", json={}, headers={"x-ueba-actor": "jos\u00e9".encode("latin-1")})
    assert response.status_code == 400 and response.json()["code"] == "INVALID_ARGUMENT"
    assert "x-ueba-actor" in response.json()["detail"]
