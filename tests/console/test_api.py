"""The HTTP/JSON API over the real services: the OpenAPI document, paging, problems, CSV, CORS."""

from __future__ import annotations

import csv
import io

import pytest

from services.console.routes import SERVICES

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"


def test_every_method_of_the_services_is_a_documented_route(api):
    document = api.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for short, service in SERVICES.items():
        for method in service.methods:
            assert f"/api/v1/{short}/{method.name}" in paths, method.full_name
    operation = paths["/api/v1/query/ListAnomalies"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ueba.v1.ListAnomaliesRequest"}
    schemas = document["components"]["schemas"]
    assert schemas["ueba.v1.Anomaly"]["properties"]["risk_level"]["enum"][-1] == "RISK_LEVEL_CRITICAL"
    assert schemas["ueba.v1.Anomaly"]["properties"]["time"]["format"] == "date-time"


def test_summary_answers_in_the_proto3_json_mapping(api):
    summary = api.post("/api/v1/query/GetSummary", json={"top_users": 3}).json()
    assert int(summary["total_anomalies"]) > 0
    assert 1 <= len(summary["riskiest_users"]) <= 3
    assert [c["key"] for c in summary["users_by_risk_level"]] == ["critical", "high", "medium", "low"]


def test_cursor_paging_walks_every_anomaly_once(api):
    total = int(api.post("/api/v1/query/GetSummary", json={}).json()["total_anomalies"])
    seen, token = [], ""
    while True:
        page = api.post("/api/v1/query/ListAnomalies", json={"page_size": 7, "page_token": token,
                                                             "filter": {"statuses": []}}).json()
        seen += [a["id"] for a in page.get("anomalies", [])]
        token = page.get("next_page_token", "")
        if not token:
            break
    assert len(seen) == len(set(seen)) == total


def test_a_bad_body_is_a_problem_naming_the_field(api):
    response = api.post("/api/v1/query/ListAnomalies", json={"page_size": "many"})
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 400 and problem["code"] == "INVALID_ARGUMENT" and "page_size" in problem["detail"]

    response = api.post("/api/v1/query/ListAnomalies", content=b"{not json")
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM


def test_service_statuses_become_http_statuses(api):
    response = api.post("/api/v1/query/ListAnomalies", json={"filter": {"query": "(user:alice"}})
    assert response.status_code == 400 and "parenthes" in response.json()["detail"]
    missing = api.post("/api/v1/query/GetAnomaly", json={"id": "00000000-0000-0000-0000-000000000000"})
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    assert missing.headers["content-type"] == PROBLEM
    unknown = api.post("/api/v1/query/NoSuchMethod", json={})
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM


def test_csv_export_streams_the_filtered_anomalies(api):
    listed = api.post("/api/v1/query/ListAnomalies", json={"page_size": 1000, "filter": {"statuses": ["ANOMALY_STATUS_NEW"]}}).json()
    response = api.post("/api/v1/query/ExportAnomalies", json={"filter": {"statuses": ["ANOMALY_STATUS_NEW"]}})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["id"] for r in rows} == {a["id"] for a in listed["anomalies"]}


def test_cors_is_off_by_default(api):
    response = api.options("/api/v1/query/GetSummary", headers={
        "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in response.headers
    response = api.post("/api/v1/query/GetSummary", json={}, headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in response.headers

