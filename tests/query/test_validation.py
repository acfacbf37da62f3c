"""Request checks of the servicer without sockets (grpc_testing): each bad field answers INVALID_ARGUMENT naming it.

grpc_testing runs no interceptors, so the servicer is wrapped to map its
exceptions with ueba.errors.status_of, the mapping the shared call
interceptor applies in a real server.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import grpc
import grpc_testing
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.query.servicer import QueryServicer
from services.query.settings import QuerySettings
from services.query.store.replica import ReadRouting
from ueba import paging
from ueba.v1 import common_pb2, query_pb2
from tests.support.grpc_unit import MappedServicer

SERVICE = query_pb2.DESCRIPTOR.services_by_name["QueryService"]
YEAR_9999 = Timestamp(seconds=int(datetime(9999, 1, 1, tzinfo=timezone.utc).timestamp()))
LEAKS = ("SELECT", "FROM ", "WHERE", "Traceback", "sqlalchemy", "psycopg")




@pytest.fixture
def server(engine, tenant):
    settings = QuerySettings.from_env({}, tenant=tenant, metrics_port=-1)
    routing = ReadRouting(engine, 1)
    yield grpc_testing.server_from_dictionary(
        {SERVICE: MappedServicer(QueryServicer(settings, engine, routing))}, grpc_testing.strict_real_time()
    )
    routing.stop()


def status(server, method: str, request) -> tuple[grpc.StatusCode, str]:
    descriptor = SERVICE.methods_by_name[method]
    if descriptor.server_streaming:
        rpc = server.invoke_unary_stream(descriptor, (), request, None)
        _metadata, code, details = rpc.termination()
    else:
        rpc = server.invoke_unary_unary(descriptor, (), request, None)
        _response, _metadata, code, details = rpc.termination()
    return code, details


def assert_invalid(server, method: str, request, field: str) -> None:
    code, details = status(server, method, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert details.startswith(field), details
    assert not any(leak in details for leak in LEAKS), details


def filter_in(range_: common_pb2.TimeRange) -> query_pb2.AnomalyFilter:
    return query_pb2.AnomalyFilter(range=range_)


@pytest.mark.parametrize("method,request_,field", [
    ("GetSummary", query_pb2.GetSummaryRequest(range=common_pb2.TimeRange(start=YEAR_9999)), "range.start"),
    ("GetSummary", query_pb2.GetSummaryRequest(range=common_pb2.TimeRange(end=Timestamp(seconds=10, nanos=-5))), "range.end"),
    ("ListAnomalies", query_pb2.ListAnomaliesRequest(filter=filter_in(common_pb2.TimeRange(start=YEAR_9999))), "filter.range.start"),
    ("ExportAnomalies", query_pb2.ExportAnomaliesRequest(filter=filter_in(common_pb2.TimeRange(end=YEAR_9999))), "filter.range.end"),
    ("ListUserScores", query_pb2.ListUserScoresRequest(range=common_pb2.TimeRange(start=Timestamp(seconds=-1))), "range.start"),
    ("GetRiskTimeline", query_pb2.GetRiskTimelineRequest(range=common_pb2.TimeRange(end=YEAR_9999)), "range.end"),
    ("GetUserTimeline", query_pb2.GetUserTimelineRequest(user="alice", day=YEAR_9999), "day"),
])
def test_out_of_range_timestamps_name_their_field(server, method, request_, field):
    assert_invalid(server, method, request_, field)


@pytest.mark.parametrize("term", ["after:999999d", "before:9999999w", "after:9999-01-01", "before:0001-01-01"])
def test_query_times_outside_the_store_name_the_term(server, term):
    request = query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(query=f"risk>=high {term}"))
    code, details = status(server, "ListAnomalies", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("filter.query") and term in details, details


@pytest.mark.parametrize("method,request_", [
    ("ListAnomalies", query_pb2.ListAnomaliesRequest(page_size=-1)),
    ("ListUsers", query_pb2.ListUsersRequest(page_size=-1)),
    ("ListUserScores", query_pb2.ListUserScoresRequest(page_size=-5)),
    ("ListIgnoredUsers", query_pb2.ListIgnoredUsersRequest(page_size=-1)),
])
def test_negative_page_sizes_are_refused(server, method, request_):
    assert_invalid(server, method, request_, "page_size")


def forged(fp: str, key: list) -> str:
    """A token with this fingerprint and key, as anyone can write one (the fingerprint is no secret)."""
    body = json.dumps({"f": fp, "k": key, "n": datetime.now(timezone.utc).isoformat()}).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def forged_tokens(tenant: str) -> list[tuple[str, object]]:
    anomalies_fp = paging.fingerprint(tenant, query_pb2.AnomalyFilter().SerializeToString(deterministic=True), "time desc")
    return [
        ("ListAnomalies", query_pb2.ListAnomaliesRequest(page_token="bm90IGEgdG9rZW4")),
        ("ListAnomalies", query_pb2.ListAnomaliesRequest(page_token="x" * 5000)),
        ("ListAnomalies", query_pb2.ListAnomaliesRequest(page_token=forged(anomalies_fp, ["'; DROP TABLE anomalies --", "x"]))),
        ("ListAnomalies", query_pb2.ListAnomaliesRequest(page_token=forged("0" * 16, ["2026-01-01T00:00:00+00:00", "x"]))),
        ("ListUsers", query_pb2.ListUsersRequest(page_token=forged(paging.fingerprint(tenant, 0, "", "", "", False), ["a", 1, "b"]))),
        ("ListUserScores", query_pb2.ListUserScoresRequest(
            page_token=forged(paging.fingerprint(tenant, None, None, [], 0.0, False), ["alice", "not a day"]))),
        ("ListIgnoredUsers", query_pb2.ListIgnoredUsersRequest(page_token=forged(paging.fingerprint(tenant, "ignored"), [5]))),
    ]


def test_forged_page_tokens_are_refused_without_sql(server, tenant):
    for method, request in forged_tokens(tenant):
        assert_invalid(server, method, request, "page_token")
