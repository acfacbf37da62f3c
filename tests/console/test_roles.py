"""Roles and tenants over the HTTP API, as tests/security checks them over gRPC.

The services and the console run with UEBA_AUTH=tokens (the session's organisation,
tests/console/conftest.py); the console holds no credentials, so what a token may do
over HTTP is what it may do over gRPC. Each test acts in tenants of its own.
"""

from __future__ import annotations

import uuid

import pytest

from services.console.routes import all_routes
from tests.query.conftest import Store
from ueba.auth.roles import METHOD_ROLES, ROLES

from .conftest import mint

pytestmark = pytest.mark.e2e


@pytest.fixture
def secured(organisation):
    return organisation, organisation.engine


def token(engine, tenant: str, role: str) -> str:
    return mint(engine, tenant, role)


def test_a_call_without_a_valid_token_is_401_problem(secured):
    running, _engine = secured
    with running.client() as anonymous, running.client("not-a-token") as wrong:
        for client in (anonymous, wrong):
            response = client.post("/api/v1/query/GetSummary", json={})
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/api/v1/config").json() == {"auth": "tokens"}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_call_over_http_exactly_what_it_may_over_grpc(secured, role):
    running, engine = secured
    with running.client(token(engine, f"t{uuid.uuid4().hex[:8]}", role)) as client:
        for route in all_routes():
            allowed = role in METHOD_ROLES[route.grpc_path]
            status = client.post(route.path, json={}).status_code
            if allowed:
                assert status not in (401, 403), f"{role} refused {route.path}"
            else:
                assert status == 403, f"{role} got {status} from {route.path}"


def test_a_tenant_sees_and_reviews_nothing_of_another(secured):
    running, engine = secured
    a, b = f"a{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
    mine = Store(engine, running.database_url, a).anomaly("alice", 80)
    theirs = Store(engine, running.database_url, b).anomaly("bob-of-b", 90)
    with running.client(token(engine, a, "admin")) as client:
        listed = client.post("/api/v1/query/ListAnomalies", json={"filter": {"statuses": []}}).json()
        assert [x["id"] for x in listed["anomalies"]] == [str(mine)]
        assert client.post("/api/v1/query/GetAnomaly", json={"id": str(theirs)}).status_code == 404
        review = client.post("/api/v1/query/ReviewAnomalies", json={"action": "REVIEW_ACTION_RESOLVE", "ids": [str(theirs)]})
        assert review.status_code in (200, 404) and int(review.json().get("updated", 0)) == 0
        export = client.post("/api/v1/query/ExportAnomalies", json={})
        assert "bob-of-b" not in export.text and "alice" in export.text
    with running.client(token(engine, b, "analyst")) as client:
        theirs_now = client.post("/api/v1/query/GetAnomaly", json={"id": str(theirs)}).json()
        assert theirs_now["status"] == "ANOMALY_STATUS_NEW"
