"""Cases over the HTTP API: who the actor is, with tokens and without.

With tokens the services take the token's name and ignore a named actor; without
tokens the console passes on the `x-ueba-actor` header the caller sends.
"""

from __future__ import annotations

import pytest

from tests.query.conftest import Store

pytestmark = pytest.mark.e2e


def actors(client, case_id: str) -> set[str]:
    detail = client.post("/api/v1/cases/GetCase", json={"id": case_id}).json()
    return {entry["actor"] for entry in detail["timeline"]}


def test_with_tokens_the_actor_is_the_tokens_name_whatever_the_header_says(api):
    # The oldest: the browser test opens its case over the newest.
    incident = api.post("/api/v1/query/ListIncidents", json={"statuses": ["ANOMALY_STATUS_NEW"], "page_size": 100}).json()["incidents"][-1]
    opened = api.post("/api/v1/cases/OpenCase", json={"incident_ids": [incident["id"]], "comment": "looking"},
                      headers={"x-ueba-actor": "mallory"})
    assert opened.status_code == 200, opened.text
    case = opened.json()
    assert case["created_by"].startswith("admin-") and case["incident_ids"] == [incident["id"]]
    assert actors(api, case["id"]) == {case["created_by"]}

    again = api.post("/api/v1/cases/OpenCase", json={"incident_ids": [incident["id"]]})
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert case["id"] in again.json()["detail"]
    listed = api.post("/api/v1/cases/ListCases", json={"statuses": ["CASE_STATUS_NEW"], "page_size": 100}).json()
    assert case["id"] in [c["id"] for c in listed["cases"]]


def test_without_tokens_the_header_names_the_actor(without_tokens):
    store = Store(without_tokens.engine, without_tokens.database_url, "default")
    incident, _ = store.incident("alice", (80, 60))
    with without_tokens.client() as client:
        case = client.post("/api/v1/cases/OpenCase", json={"incident_ids": [incident]},
                           headers={"x-ueba-actor": "carol"}).json()
        comment = client.post("/api/v1/cases/CommentCase", json={"id": case["id"], "text": "seen before"},
                              headers={"x-ueba-actor": "dave"})
        assert comment.status_code == 200, comment.text
        assert case["created_by"] == "carol" and actors(client, case["id"]) == {"carol", "dave"}

        unnamed = client.post("/api/v1/cases/CommentCase", json={"id": case["id"], "text": "who?"})
        assert unnamed.status_code == 200 and "anonymous" in actors(client, case["id"])
        for bad in ("", "x" * 129):
            refused = client.post("/api/v1/cases/CommentCase", json={"id": case["id"], "text": "x"}, headers={"x-ueba-actor": bad})
            assert refused.status_code == 400 and refused.headers["content-type"] == "application/problem+json"
