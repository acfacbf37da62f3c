"""Request checks of the ScorerService without sockets (grpc_testing): each bad field answers
INVALID_ARGUMENT naming it, and RunScoring canonicalises users in the configured name mode.

grpc_testing runs no interceptors, so the servicer is wrapped to map its exceptions with
ueba.errors.status_of, the mapping the shared call interceptor applies in a real server.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import grpc
import grpc_testing
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.scorer.runs import Scorer
from services.scorer.servicer import ScorerServicer
from services.scorer.settings import ScorerSettings
from ueba.anomaly_log import AnomalySink
from services.scorer.store import ScorerStore
from tests.scorer.conftest import SCORED_DAY
from tests.scorer.helpers import Activity
from tests.support.grpc_unit import MappedServicer
from ueba import paging
from ueba.db import create_db_engine
from ueba.v1 import common_pb2, scorer_pb2

SERVICE = scorer_pb2.DESCRIPTOR.services_by_name["ScorerService"]
YEAR_9999 = Timestamp(seconds=int(datetime(9999, 1, 1, tzinfo=timezone.utc).timestamp()))
LEAKS = ("SELECT", "FROM ", "WHERE", "Traceback", "sqlalchemy", "psycopg")




def _server(url: str, **env: str):
    settings = ScorerSettings.from_env({"DATABASE_URL": url, "UEBA_SCORING_SCHEDULE": "off", **env})
    engine = create_db_engine(url, pool_size=2)
    servicer = ScorerServicer(Scorer(engine, settings, AnomalySink("off")), ScorerStore(engine), settings)
    return grpc_testing.server_from_dictionary({SERVICE: MappedServicer(servicer)}, grpc_testing.strict_real_time()), engine


@pytest.fixture
def server(scratch_url):
    served, engine = _server(scratch_url)
    yield served
    engine.dispose()


def call(server, method: str, request):
    rpc = server.invoke_unary_unary(SERVICE.methods_by_name[method], (), request, None)
    return rpc.termination()  # response, metadata, code, details


def assert_invalid(server, method: str, request, field: str) -> None:
    _response, _metadata, code, details = call(server, method, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert details.startswith(field), details
    assert not any(leak in details for leak in LEAKS), details


def _ts(t: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(t)
    return ts


DAY_RANGE = common_pb2.TimeRange(start=_ts(SCORED_DAY), end=_ts(SCORED_DAY + timedelta(days=1)))


@pytest.mark.parametrize("request_,field", [
    (scorer_pb2.RunScoringRequest(range=common_pb2.TimeRange(start=YEAR_9999)), "range.start"),
    (scorer_pb2.RunScoringRequest(range=common_pb2.TimeRange(end=YEAR_9999)), "range.end"),
    (scorer_pb2.RunScoringRequest(range=common_pb2.TimeRange(end=Timestamp(seconds=10, nanos=-5))), "range.end"),
    (scorer_pb2.RunScoringRequest(range=common_pb2.TimeRange(start=Timestamp(seconds=-1))), "range.start"),
    (scorer_pb2.RunScoringRequest(range=common_pb2.TimeRange(start=_ts(SCORED_DAY), end=_ts(SCORED_DAY))), "range"),
    # Both within one whole hour: nothing to score.
    (scorer_pb2.RunScoringRequest(range=common_pb2.TimeRange(
        start=_ts(SCORED_DAY + timedelta(minutes=5)), end=_ts(SCORED_DAY + timedelta(minutes=50)))), "range"),
    (scorer_pb2.RunScoringRequest(range=common_pb2.TimeRange(
        start=_ts(SCORED_DAY - timedelta(days=400)), end=_ts(SCORED_DAY))), "range: at most 62 days"),
    (scorer_pb2.RunScoringRequest(range=DAY_RANGE, users=["alice", ""]), "users[1]"),
    (scorer_pb2.RunScoringRequest(range=DAY_RANGE, users=["CORP\\"]), "users[0]"),
    (scorer_pb2.RunScoringRequest(range=DAY_RANGE, users=["a" * 257]), "users[0]"),
    (scorer_pb2.RunScoringRequest(range=DAY_RANGE, users=["al\x00ice"]), "users[0]"),
])
def test_bad_run_requests_name_their_field_and_start_no_run(server, request_, field):
    assert_invalid(server, "RunScoring", request_, field)
    _response, _metadata, code, _details = call(server, "ListScoringRuns", scorer_pb2.ListScoringRunsRequest())
    assert code == grpc.StatusCode.OK and not _response.runs


def test_run_ids_are_checked_and_unknown_runs_not_found(server):
    assert_invalid(server, "GetScoringRun", scorer_pb2.GetScoringRunRequest(id="not-a-uuid"), "id")
    _response, _metadata, code, details = call(
        server, "GetScoringRun", scorer_pb2.GetScoringRunRequest(id="00000000-0000-0000-0000-000000000000"))
    assert code == grpc.StatusCode.NOT_FOUND and "00000000-0000-0000-0000-000000000000" in details


def _forged(fp: str, key: list) -> str:
    body = json.dumps({"f": fp, "k": key, "n": datetime.now(timezone.utc).isoformat()}).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


@pytest.mark.parametrize("method,request_type", [
    ("ListScoringRuns", scorer_pb2.ListScoringRunsRequest),
    ("ListPeerGroups", scorer_pb2.ListPeerGroupsRequest),
])
def test_list_pages_are_checked(server, method, request_type):
    assert_invalid(server, method, request_type(page_size=-1), "page_size")
    for token in ("garbage!", "x" * 3000, base64.urlsafe_b64encode(b"[1, 2]").decode(),
                  _forged(paging.fingerprint("default", "scoring_runs"), [1, {"a": 1}]),
                  _forged(paging.fingerprint("default", "peer_groups"), [["' OR 1=1 --"]]),
                  # A well-formed token of another tenant's (or another method's) query.
                  _forged(paging.fingerprint("other", "scoring_runs"), ["2026-01-01T00:00:00+00:00", "x"]),
                  _forged(paging.fingerprint("other", "peer_groups"), ["x"])):
        assert_invalid(server, method, request_type(page_token=token), "page_token")


def _alices() -> Activity:
    """Two accounts that only the user name mode tells apart: alice, and alice of the corp domain."""
    act = Activity()
    for user in ("alice", "alice@corp"):
        act.office_month(user, 28)
        act.workday(user, SCORED_DAY)
    return act


@pytest.mark.parametrize("mode,scored", [("strip_domain", "alice"), ("qualified", "alice@corp")])
def test_run_scoring_canonicalises_users_in_the_name_mode(scratch_url, mode, scored):
    _alices().write(scratch_url)
    served, engine = _server(scratch_url, UEBA_USER_NAME_MODE=mode)
    try:
        for typed in ("alice@corp", "CORP\\Alice"):
            run, _metadata, code, details = call(
                served, "RunScoring", scorer_pb2.RunScoringRequest(range=DAY_RANGE, users=[typed]))
            assert code == grpc.StatusCode.OK, details
            assert run.status == scorer_pb2.RUN_STATUS_SUCCEEDED and run.users_scored == 1, run
            with engine.connect() as conn:
                users = conn.exec_driver_sql("SELECT user_name FROM user_scores WHERE run_id = %(id)s",
                                             {"id": run.id}).scalars().all()
            assert users == [scored]
    finally:
        engine.dispose()
