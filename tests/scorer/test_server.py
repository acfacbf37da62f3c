"""The ScorerService over gRPC: an in-process server on port 0, the CLI, and the real process."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.scorer.server import create_server
from services.scorer.settings import ScorerSettings
from tests.scorer.conftest import SCORED_DAY, constructed_activity
from ueba.cli.main import main as cli
from ueba.db import create_db_engine
from ueba.launcher import start_service
from ueba.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc


def _range(start, end) -> common_pb2.TimeRange:
    a, b = Timestamp(), Timestamp()
    a.FromDatetime(start)
    b.FromDatetime(end)
    return common_pb2.TimeRange(start=a, end=b)


@pytest.fixture(scope="module")
def served(server_url):
    from ueba.store.databases import drop_database, new_database
    from ueba.store.migrate import upgrade

    name, url = new_database(server_url, "ueba_scorer_srv")
    upgrade(url)
    constructed_activity().write(url)
    settings = ScorerSettings.from_env({
        "DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
        "UEBA_SCORING_SCHEDULE": "off", "UEBA_ANOMALY_LOG": "off",
    })
    engine = create_db_engine(url, pool_size=2)
    server, port = create_server(settings, engine)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield url, port, scorer_pb2_grpc.ScorerServiceStub(channel)
    channel.close()
    server.stop(0).wait()
    engine.dispose()
    drop_database(server_url, name)


def test_run_scoring_get_and_list(served):
    url, port, stub = served
    run = stub.RunScoring(scorer_pb2.RunScoringRequest(range=_range(SCORED_DAY, SCORED_DAY + timedelta(days=1))))
    assert run.status == scorer_pb2.RUN_STATUS_SUCCEEDED, run.error
    assert run.trigger == scorer_pb2.RUN_TRIGGER_ON_DEMAND
    assert run.users_scored == 13 and run.anomalies >= 4 and run.learning_users == 1
    assert run.hours_scored > 0 and run.event_scores > run.hours_scored
    assert run.range.start.ToDatetime().hour == 0 and run.finished_at.seconds >= run.started_at.seconds
    got = stub.GetScoringRun(scorer_pb2.GetScoringRunRequest(id=run.id))
    assert got.id == run.id and got.event_scores == run.event_scores
    # A run for one user only
    one = stub.RunScoring(scorer_pb2.RunScoringRequest(
        range=_range(SCORED_DAY, SCORED_DAY + timedelta(days=1)), users=["CORP\\User0"]))
    assert one.status == scorer_pb2.RUN_STATUS_SUCCEEDED and one.users_scored == 1
    first = stub.ListScoringRuns(scorer_pb2.ListScoringRunsRequest(page_size=1))
    assert [r.id for r in first.runs] == [one.id] and first.next_page_token
    second = stub.ListScoringRuns(scorer_pb2.ListScoringRunsRequest(page_size=1, page_token=first.next_page_token))
    assert [r.id for r in second.runs] == [run.id]


def test_peer_groups_and_models(served):
    _, _, stub = served
    stub.RunScoring(scorer_pb2.RunScoringRequest(range=_range(SCORED_DAY, SCORED_DAY + timedelta(days=1))))
    groups = stub.ListPeerGroups(scorer_pb2.ListPeerGroupsRequest()).groups
    sales = next(g for g in groups if g.id == "department:sales")
    assert sales.method == "department" and sales.member_count == 6
    assert any(g.method == "clustering" for g in groups)
    # A page at a time, in id order; a page token belongs to its own method.
    pages, token = [], ""
    while True:
        page = stub.ListPeerGroups(scorer_pb2.ListPeerGroupsRequest(page_size=1, page_token=token))
        pages += [g.id for g in page.groups]
        token = page.next_page_token
        if not token:
            break
        with pytest.raises(grpc.RpcError) as err:
            stub.ListScoringRuns(scorer_pb2.ListScoringRunsRequest(page_token=token))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.value.details()
    assert pages == sorted(g.id for g in groups) and len(pages) > 1
    models = stub.ListModels(scorer_pb2.ListModelsRequest()).models
    names = [m.name for m in models]
    assert names == ["authentication", "impacted_host", "login_time", "origin_host", "origin_location",
                     "data_movement", "peer_group", "corroboration"]
    auth = models[0]
    assert auth.weight == 1.0 and "failures" in [f.name for f in auth.features] and auth.description


@pytest.mark.parametrize(
    "request_, code, text",
    [
        (scorer_pb2.RunScoringRequest(range=_range(SCORED_DAY, SCORED_DAY)), grpc.StatusCode.INVALID_ARGUMENT, "range"),
        (scorer_pb2.RunScoringRequest(range=_range(SCORED_DAY - timedelta(days=400), SCORED_DAY)),
         grpc.StatusCode.INVALID_ARGUMENT, "at most"),
        (scorer_pb2.RunScoringRequest(range=_range(SCORED_DAY, SCORED_DAY + timedelta(hours=1)), users=[""]),
         grpc.StatusCode.INVALID_ARGUMENT, "users[0]"),
    ],
)
def test_bad_run_requests(served, request_, code, text):
    _, _, stub = served
    with pytest.raises(grpc.RpcError) as err:
        stub.RunScoring(request_)
    assert err.value.code() == code and text in err.value.details()


def test_unknown_and_malformed_ids_and_tokens(served):
    _, _, stub = served
    with pytest.raises(grpc.RpcError) as err:
        stub.GetScoringRun(scorer_pb2.GetScoringRunRequest(id="not-a-uuid"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        stub.GetScoringRun(scorer_pb2.GetScoringRunRequest(id="00000000-0000-0000-0000-000000000000"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.ListScoringRuns(scorer_pb2.ListScoringRunsRequest(page_token="garbage!"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cli_lists_models_and_runs(served, capsys):
    _, port, _ = served
    assert cli(["scoring", "--address", f"127.0.0.1:{port}", "models"]) == 0
    out = capsys.readouterr().out
    assert "origin_location (weight 1)" in out and "max_speed_kmh" in out
    assert cli(["scoring", "--address", f"127.0.0.1:{port}", "run", "--start", SCORED_DAY.isoformat(),
                "--end", (SCORED_DAY + timedelta(days=1)).isoformat()]) == 0
    assert "succeeded" in capsys.readouterr().out
    assert cli(["scoring", "--address", f"127.0.0.1:{port}", "peers"]) == 0
    assert "department:sales" in capsys.readouterr().out


@pytest.mark.e2e
def test_scorer_process_scores_on_demand(scratch_url):
    constructed_activity().write(scratch_url)
    svc = start_service("scorer", {"DATABASE_URL": scratch_url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
                                   "UEBA_ANOMALY_LOG": "off"})
    try:
        with grpc.insecure_channel(svc.address) as channel:
            stub = scorer_pb2_grpc.ScorerServiceStub(channel)
            run = stub.RunScoring(scorer_pb2.RunScoringRequest(range=_range(SCORED_DAY, SCORED_DAY + timedelta(days=1))),
                                  timeout=120)
            assert run.status == scorer_pb2.RUN_STATUS_SUCCEEDED, run.error
            assert run.anomalies >= 4
            assert stub.GetScoringRun(scorer_pb2.GetScoringRunRequest(id=run.id)).status == scorer_pb2.RUN_STATUS_SUCCEEDED
    finally:
        assert svc.stop() == 0
