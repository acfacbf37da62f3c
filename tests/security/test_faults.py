"""Faults, each with exact counts: Postgres restarted mid-stream, profiles and scorer
killed (SIGKILL) mid-work and restarted, and SIGTERM draining an in-flight call.

The ingest process killed mid-batch is tests/ingest/test_e2e.py
(test_stream_survives_a_crash_and_stores_every_valid_event_once): every valid
event stored exactly once after SIGSTOP + SIGKILL + restart; not repeated here.
In-process crash points of the evaluator and the scorer are in
tests/profiles/test_evaluator.py and tests/scorer/test_runs.py; these are the
process-level versions.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import grpc
import psycopg
import pytest
from sqlalchemy import delete

from ueba.store.databases import drop_database, new_database
from ueba.client.ingest import IngestClient
from ueba.db import create_db_engine, libpq_url, with_database
from ueba.launcher import start_service
from ueba.store.migrate import upgrade
from ueba.v1 import common_pb2, query_pb2, query_pb2_grpc, scorer_pb2, scorer_pb2_grpc

from tests.support.waiting import eventually, settled

from .conftest import mint
from .pgctl import PrivatePostgres, pg_bin, server_user

pytestmark = pytest.mark.e2e

TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def simulated(users: int, days: int, seed: int) -> list[common_pb2.Event]:
    from ueba.simulator import SimulationConfig, simulate

    return list(simulate(SimulationConfig(users=users, days=days, seed=seed, start=TODAY - timedelta(days=days + 1))).events())


def load(url: str, events: list[common_pb2.Event], tenant: str = "default") -> int:
    """Stores events with the ingest pipeline in this process; returns how many were accepted."""
    from services.ingest.pipeline import IngestPipeline
    from services.ingest.settings import IngestSettings

    engine = create_db_engine(url, pool_size=2)
    pipeline = IngestPipeline(IngestSettings.from_env({"DATABASE_URL": url}), engine)
    accepted = sum(pipeline.ingest(tenant, events[i : i + 2000]).accepted for i in range(0, len(events), 2000))
    engine.dispose()
    return accepted


def scalar(url: str, sql: str, *params):
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return conn.execute(sql, params).fetchone()[0]


@pytest.fixture
def own_db(server_url):
    name, url = new_database(server_url, "ueba_fault")
    upgrade(url)
    yield url
    drop_database(server_url, name)


# --- Postgres restarted in the middle of a stream ---------------------------------------------------

@pytest.fixture
def private_pg():
    bin_dir = pg_bin()
    assert bin_dir is not None, "no PostgreSQL server binaries (initdb, pg_ctl), not even the embedded Postgres's"
    pg = PrivatePostgres(bin_dir, server_user())
    try:
        pg.init()
        pg.start()
        with psycopg.connect(libpq_url(pg.url), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "ueba"')
        yield pg
    finally:
        if pg.running():
            pg.stop("immediate")
        pg.remove()


def test_postgres_restarted_mid_stream_loses_and_doubles_nothing(private_pg, tmp_path):
    url = with_database(private_pg.url, "ueba")
    upgrade(url)
    events = simulated(users=60, days=6, seed=11)
    engine = create_db_engine(url, pool_size=1)
    _, token = mint(engine, "default", "agent", "restart-agent")
    engine.dispose()
    service = start_service("ingest", {
        "DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
        # Tokens on: the agent's reconnects also pass through authentication while the store is down.
        "UEBA_AUTH": "tokens", "UEBA_AUTH_CACHE_SECONDS": "0.5",
    }, log_path=tmp_path / "ingest.log")
    outage = {"started": threading.Event(), "over": threading.Event()}

    def stream():
        for i, event in enumerate(events):
            if i == len(events) // 3:
                private_pg.stop("fast")  # the database goes away with batches in flight
                outage["started"].set()

                def back():
                    time.sleep(2.0)
                    private_pg.start()
                    outage["over"].set()

                threading.Thread(target=back, daemon=True).start()
            yield event

    try:
        with IngestClient(service.address, batch_size=500, window=4, token=token,
                          initial_backoff=0.2, max_backoff=1.0, max_attempts=40) as client:
            totals = client.send(stream())
    finally:
        outage["over"].wait(30)
        service.stop()
    assert outage["started"].is_set() and outage["over"].is_set()
    assert totals.sent == len(events)
    assert totals.reconnects >= 1 and totals.resent_batches >= 1, "the outage was not felt"
    assert totals.rejected == 0
    assert totals.accepted + totals.duplicates == len(events)
    rows, distinct = scalar(url, "SELECT count(*) FROM events"), scalar(url, "SELECT count(DISTINCT event_id) FROM events")
    assert rows == distinct == len({e.event_id for e in events})


# --- profiles killed mid-evaluation --------------------------------------------------------------------

def rule_anomalies(url: str) -> list[tuple]:
    """(profile, user, window start, what finding, dedup key): an account's linked finding and its
    high-risk success during the same attack share the attack's start; the group's kind tells them apart."""
    with psycopg.connect(libpq_url(url)) as conn:
        return sorted(conn.execute(
            "SELECT profile_name, user_name, window_start, split_part(evidence->>'group', ':', 1), dedup_key"
            " FROM anomalies WHERE source = 'rule'"
        ).fetchall())


def events_behind(url: str) -> int:
    """Events not yet taken by the evaluator's cursor (all of them before it has one)."""
    return scalar(url, """SELECT count(*) FROM events WHERE NOT coalesce(pg_visible_in_snapshot(
        txid, (SELECT snapshot::pg_snapshot FROM profile_cursors WHERE consumer = 'evaluator')), false)""")


def test_profiles_killed_mid_evaluation_gives_no_duplicates_and_no_gaps(own_db, tmp_path):
    from services.profiles.evaluator import ProfileEvaluator
    from ueba.store.schema import anomalies, profile_cursors

    events = simulated(users=40, days=9, seed=3)
    # A tenant the service has not seeded at start: the evaluator seeds its built-in profiles as it meets it.
    assert load(own_db, events, tenant="faults") == len(events)
    env = {"DATABASE_URL": own_db, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
           "UEBA_PROFILES_BATCH_EVENTS": "100", "UEBA_PROFILES_POLL_SECONDS": "0.1",
           # The killed process's bucket leases must expire before the restarted one can take them.
           "UEBA_LEASE_TTL_SECONDS": "2", "UEBA_LEASE_HEARTBEAT_SECONDS": "0.5"}
    log = tmp_path / "profiles.log"
    first = start_service("profiles", env, log_path=log)
    try:
        # SIGKILL once the evaluator has committed part of the events: its open transaction
        # is lost, nothing else. Progress is read from its cursor, not from anomalies (a fast
        # evaluator can raise the last anomaly before the first one is seen).
        eventually(lambda: 0 < len(events) - events_behind(own_db) < len(events) // 2, timeout=60, interval=0.01,
                   message="the evaluator made no progress within a minute")
        first.kill()
    finally:
        first.kill()
    behind_at_kill = events_behind(own_db)
    second = start_service("profiles", env, log_path=log)
    try:
        eventually(lambda: events_behind(own_db) == 0, timeout=120, message="the restarted evaluator did not catch up")
        settled(lambda: len(rule_anomalies(own_db)), quiet=3.0, timeout=60)
    finally:
        assert second.stop() == 0
    got = rule_anomalies(own_db)
    assert behind_at_kill > 0, "the kill did not land mid-way"
    assert len({g[4] for g in got}) == len(got) and len({g[:4] for g in got}) == len(got), "duplicates"

    # The reference: one evaluator, never interrupted, over the same events and profiles.
    engine = create_db_engine(own_db, pool_size=2)
    with engine.begin() as conn:
        conn.execute(delete(anomalies).where(anomalies.c.source == "rule"))
        conn.execute(delete(profile_cursors))
    reference = ProfileEvaluator(engine, batch_events=100_000)
    while reference.run_once():
        pass
    engine.dispose()
    expected = rule_anomalies(own_db)
    assert [g[:4] for g in got] == [e[:4] for e in expected]  # same anomalies: none lost, none extra
    assert len(expected) > 10


# --- scorer killed mid-run ----------------------------------------------------------------------------------

def score_rows(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(libpq_url(url)) as conn:
        return {
            "event_scores": sorted(conn.execute("SELECT user_name, hour, model, score FROM event_scores").fetchall()),
            "user_scores": sorted(conn.execute("SELECT user_name, day, score, scored_hours FROM user_scores").fetchall()),
            "anomalies": sorted(conn.execute("SELECT user_name, profile_kind, time, risk_score, dedup_key FROM anomalies WHERE source = 'model'").fetchall()),
        }


def test_scorer_killed_mid_run_leaves_no_partial_scores(own_db, tmp_path):
    events = simulated(users=60, days=12, seed=5)
    load(own_db, events)
    env = {"DATABASE_URL": own_db, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
           "UEBA_SCORING_SCHEDULE": "off", "UEBA_ANOMALY_LOG": str(tmp_path / "anomaly.log")}
    log = tmp_path / "scorer.log"
    window = common_pb2.TimeRange()
    window.start.FromDatetime(TODAY - timedelta(days=12))
    window.end.FromDatetime(TODAY)
    request = scorer_pb2.RunScoringRequest(range=window)

    first = start_service("scorer", env, log_path=log)
    outcome: dict = {}

    def run():
        with grpc.insecure_channel(first.address) as ch:
            try:
                outcome["run"] = scorer_pb2_grpc.ScorerServiceStub(ch).RunScoring(request, timeout=300)
            except grpc.RpcError as exc:
                outcome["error"] = exc.code()

    caller = threading.Thread(target=run)
    caller.start()
    try:
        eventually(lambda: scalar(own_db, "SELECT count(*) FROM scoring_runs WHERE status = 'running'"), timeout=60,
                   message="the run never started")
        time.sleep(0.3)  # well inside the run
        first.kill()
    finally:
        first.kill()
        caller.join(30)
    assert outcome.get("error") == grpc.StatusCode.UNAVAILABLE, outcome
    killed_id = scalar(own_db, "SELECT id::text FROM scoring_runs ORDER BY started_at LIMIT 1")
    assert score_rows(own_db) == {"event_scores": [], "user_scores": [], "anomalies": []}, "a killed run left rows behind"

    second = start_service("scorer", env, log_path=log)
    try:
        # The restarted scorer marks the killed run failed, and scoring the window again completes it.
        assert scalar(own_db, "SELECT status FROM scoring_runs WHERE id = %s", killed_id) == "failed"
        with grpc.insecure_channel(second.address) as ch:
            stub = scorer_pb2_grpc.ScorerServiceStub(ch)
            done = stub.RunScoring(request, timeout=300)
            after_restart = score_rows(own_db)
            again = stub.RunScoring(request, timeout=300)
    finally:
        assert second.stop() == 0
    assert done.status == again.status == scorer_pb2.RUN_STATUS_SUCCEEDED
    assert after_restart == score_rows(own_db), "scoring the window again changed the rows: duplicates or gaps"
    assert after_restart["event_scores"] and after_restart["user_scores"]
    assert scalar(own_db, "SELECT count(*) FROM event_scores WHERE run_id::text = %s", killed_id) == 0
    hours = scalar(own_db, "SELECT count(DISTINCT (user_name, date_trunc('hour', time))) FROM events WHERE time >= %s AND time < %s",
                   TODAY - timedelta(days=12), TODAY)
    scored = scalar(own_db, "SELECT count(DISTINCT (user_name, hour)) FROM event_scores")
    assert scored >= hours, "user-hours with events but no score"


# --- SIGTERM drains in-flight calls ---------------------------------------------------------------------------

LOCK_WAITERS = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ueba-query' AND wait_event_type = 'Lock'"

def test_sigterm_finishes_the_call_in_flight_refuses_new_ones_and_exits_0(own_db, tmp_path):
    with psycopg.connect(libpq_url(own_db), autocommit=True) as conn:
        anomaly_id = conn.execute(
            "INSERT INTO anomalies (tenant, user_name, source, profile_id, profile_name, profile_kind, risk_score, description,"
            " dimension, time, window_start, window_end, dedup_key) VALUES ('default', 'drain-user', 'rule', 'p', 'p', 'failed_logins',"
            " 50, 'd', 'authentication', now(), now() - interval '1 hour', now(), 'drain-1') RETURNING id::text"
        ).fetchone()[0]
    service = start_service("query", {"DATABASE_URL": own_db, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
                                      "UEBA_DRAIN_SECONDS": "60"}, log_path=tmp_path / "query.log")
    result: dict = {}
    blocker = psycopg.connect(libpq_url(own_db))
    try:
        # Hold the anomaly's row lock so that the review below is in flight for as long as the test wants.
        blocker.execute("SELECT id FROM anomalies WHERE id = %s FOR UPDATE", (anomaly_id,))
        channel = grpc.insecure_channel(service.address)
        stub = query_pb2_grpc.QueryServiceStub(channel)

        def review():
            try:
                result["reply"] = stub.ReviewAnomalies(query_pb2.ReviewAnomaliesRequest(
                    action=query_pb2.REVIEW_ACTION_RESOLVE, ids=[anomaly_id]), timeout=120)
            except grpc.RpcError as exc:
                result["error"] = (exc.code(), exc.details())

        slow = threading.Thread(target=review)
        slow.start()
        eventually(lambda: scalar(own_db, LOCK_WAITERS), timeout=30, message="the review never reached the lock")
        service.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # New calls are refused, on the open channel and on a new one, while the review waits.
        for ch in (channel, grpc.insecure_channel(service.address)):
            with pytest.raises(grpc.RpcError) as refused:
                query_pb2_grpc.QueryServiceStub(ch).GetSummary(query_pb2.GetSummaryRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert slow.is_alive() and service.process.poll() is None
        blocker.rollback()  # let the review go on
        slow.join(60)
        assert result.get("reply") is not None and result["reply"].updated == 1, result
        assert service.process.wait(60) == 0
        channel.close()
    finally:
        blocker.close()
        service.stop()
    assert scalar(own_db, "SELECT status FROM anomalies WHERE id = %s", anomaly_id) == "resolved"


def test_sigterm_during_a_stuck_export_exits_within_the_drain_bound(own_db, service_processes):
    from ueba.server import DRAIN_MARGIN_SECONDS

    drain = 2.0
    service = service_processes.start("query", {"DATABASE_URL": own_db, "UEBA_LISTEN": "127.0.0.1:0",
                                                "UEBA_DRAIN_SECONDS": str(drain)})
    blocker = psycopg.connect(libpq_url(own_db))
    try:
        # The export waits on this lock for as long as the test holds it: a call that never ends by itself.
        blocker.execute("LOCK TABLE anomalies IN ACCESS EXCLUSIVE MODE")
        channel = grpc.insecure_channel(service.address)
        export = query_pb2_grpc.QueryServiceStub(channel).ExportAnomalies(query_pb2.ExportAnomaliesRequest(), timeout=120)
        consumer = threading.Thread(target=_drain_quietly, args=(export,), daemon=True)
        consumer.start()
        eventually(lambda: scalar(own_db, LOCK_WAITERS), timeout=30, message="the export never reached the lock")
        started = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        code = service.process.wait(drain + DRAIN_MARGIN_SECONDS + 10)
        took = time.monotonic() - started
        channel.close()
    finally:
        blocker.close()
    assert code == 0
    assert drain <= took <= drain + DRAIN_MARGIN_SECONDS + 1.5, took


def _drain_quietly(call) -> None:
    try:
        for _ in call:
            pass
    except grpc.RpcError:
        pass
