"""Open streams cannot starve a server: idle reflection streams without a token, a tenant's idle
event streams, streams kept past their token's revocation. Each server here is the real one,
in this process, with a small thread pool so that starving it needs few streams."""

from __future__ import annotations

import queue
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2_grpc

from tests.support.waiting import eventually
from ueba.streams import StreamGuard, StreamLimits, StreamRefused
from ueba.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc

from .conftest import AUTH_ENV, QUIET, create, mint, settings_for

NOW = datetime.now(timezone.utc)


@contextmanager
def running(service: str, url: str, engine, **env: str):
    settings = settings_for(service, url, {**AUTH_ENV, **QUIET, **env})
    server, port = create(service, settings, engine)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(0).wait()


class HeldStreams:
    """Streaming calls whose client sends `first` messages (maybe none) and then nothing, until closed."""

    def __init__(self):
        self.calls: list = []
        self.feeds: list[queue.Queue] = []

    def open(self, method, first=(), **kwargs):
        feed: queue.Queue = queue.Queue()
        for message in first:
            feed.put(message)
        self.feeds.append(feed)
        call = method(iter(feed.get, None), **kwargs)
        self.calls.append(call)
        return call, feed

    def codes(self) -> list[grpc.StatusCode | None]:
        """The status of each call that has ended (None for those still open)."""
        out = []
        for call in self.calls:
            out.append(call.code() if not call.is_active() else None)
        return out

    def close(self):
        for feed in self.feeds:
            feed.put(None)
        for call in self.calls:
            call.cancel()


@pytest.fixture
def held():
    streams = HeldStreams()
    yield streams
    streams.close()


def bearer(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def batch(batch_id: str, n: int = 2, user: str = "stream-user") -> ingest_pb2.EventBatch:
    events = []
    for i in range(n):
        e = common_pb2.Event(event_id=f"{batch_id}-{i}", user=user, type=common_pb2.EVENT_TYPE_LOGON,
                             outcome=common_pb2.OUTCOME_SUCCESS)
        e.time.FromDatetime(NOW - timedelta(minutes=10))
        events.append(e)
    return ingest_pb2.EventBatch(batch_id=batch_id, events=events)


def test_idle_reflection_streams_without_a_token_leave_query_answering(security_url, security_engine, held):
    # 16 worker threads, as query has by default: 16 idle reflection streams took them all.
    with running("query", security_url, security_engine, UEBA_QUERY_THREADS="16") as channel:
        token = mint(security_engine, "streams-q", "analyst")[1]
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        for _ in range(24):
            held.open(stub.ServerReflectionInfo, timeout=60)
        reply = query_pb2_grpc.QueryServiceStub(channel).GetSummary(
            query_pb2.GetSummaryRequest(), metadata=bearer(token), timeout=5)
        assert reply is not None
        refused = eventually(lambda: [c for c in held.codes() if c is not None], timeout=5)
        assert set(refused) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert len(refused) == 24 - 4  # UEBA_MAX_ANONYMOUS_STREAMS


def test_one_tenants_idle_event_streams_leave_ingest_to_the_others(security_url, security_engine, held):
    with running("ingest", security_url, security_engine) as channel:
        greedy = mint(security_engine, "streams-greedy", "agent")[1]
        other = mint(security_engine, "streams-other", "agent")[1]
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for _ in range(32):
            held.open(stub.StreamEvents, metadata=bearer(greedy), timeout=60)
        ack = stub.IngestEvents(batch(f"other-{uuid.uuid4().hex[:6]}"), metadata=bearer(other), timeout=5)
        assert ack.accepted == 2
        # The refusals arrive one by one (a loaded machine spreads them out): wait for all of them.
        ended = lambda: [c for c in held.codes() if c is not None]  # noqa: E731
        refused = eventually(lambda: len(ended()) >= 32 - 8 and ended(), timeout=10)
        assert set(refused) == {grpc.StatusCode.RESOURCE_EXHAUSTED} and len(refused) == 32 - 8
        # The other tenant may still stream.
        acks = list(stub.StreamEvents(iter([batch(f"other-s-{uuid.uuid4().hex[:6]}")]), metadata=bearer(other), timeout=5))
        assert [a.accepted for a in acks] == [2]


def test_a_stream_idle_longer_than_the_limit_is_ended_unavailable(security_url, security_engine, held):
    with running("ingest", security_url, security_engine, UEBA_STREAM_IDLE_SECONDS="1") as channel:
        token = mint(security_engine, "streams-idle", "agent")[1]
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        call, feed = held.open(stub.StreamEvents, first=[batch(f"idle-{uuid.uuid4().hex[:6]}")],
                               metadata=bearer(token), timeout=60)
        assert next(call).accepted == 2  # active, then idle
        with pytest.raises(grpc.RpcError) as ended:
            next(call)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "idle" in ended.value.details()


def test_revoking_a_token_ends_its_open_stream(security_url, security_engine, held):
    from ueba.auth.tokens import revoke_token

    tenant = f"streams-revoke-{uuid.uuid4().hex[:6]}"
    with running("ingest", security_url, security_engine, UEBA_STREAM_RECHECK_SECONDS="0.5") as channel:
        token_id, secret = mint(security_engine, tenant, "agent")
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        call, feed = held.open(stub.StreamEvents, first=[batch("before", user="r")], metadata=bearer(secret), timeout=60)
        assert next(call).accepted == 2
        with security_engine.begin() as conn:  # what `ueba tokens revoke` does
            assert revoke_token(conn, token_id, "tests") is not None
        with pytest.raises(grpc.RpcError) as ended:
            next(call)  # nothing more is sent: the stream is ended by the server
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
        feed.put(batch("after", user="r"))
    with security_engine.connect() as conn:
        from sqlalchemy import text

        stored = conn.execute(text("SELECT count(*) FROM events WHERE tenant = :t"), {"t": tenant}).scalar_one()
    assert stored == 2



class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Context:
    def __init__(self):
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


def guard(clock, **limits) -> StreamGuard:
    values = dict(per_server=4, per_caller=2, anonymous=1, idle_seconds=10, recheck_seconds=5)
    return StreamGuard(StreamLimits(**{**values, **limits}), clock=clock)


def test_the_guard_admits_streams_within_each_bound_and_names_the_one_exceeded():
    g = guard(Clock())
    a1 = g.open("/m", Context(), "token-a")
    g.open("/m", Context(), "token-a")
    with pytest.raises(StreamRefused, match="UEBA_MAX_STREAMS_PER_TOKEN"):
        g.open("/m", Context(), "token-a")
    g.open("/m", Context(), None, anonymous=True)
    with pytest.raises(StreamRefused, match="UEBA_MAX_ANONYMOUS_STREAMS"):
        g.open("/m", Context(), None, anonymous=True)
    g.open("/m", Context(), None)  # authentication off: only the server-wide bound
    with pytest.raises(StreamRefused, match="UEBA_MAX_STREAMS\\b"):
        g.open("/m", Context(), "token-b")
    g.close(a1)
    g.close(a1)  # closing twice is harmless
    assert g.open("/m", Context(), "token-a") and g.open_count() == 4


def test_the_guard_ends_idle_streams_and_those_whose_token_is_revoked():
    clock = Clock()
    g = guard(clock)
    idle, busy, revoked = Context(), Context(), Context()
    waiting = g.open("/m", idle, "a")
    g.open("/m", busy, "b")
    verdicts = iter([None, (grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked token")])
    g.open("/m", revoked, "c", recheck=lambda: next(verdicts))
    waiting.waiting_since = clock.now  # ... and now waits for the next
    clock.now += 5
    g.sweep()  # the first recheck: still valid
    assert not (idle.cancelled or busy.cancelled or revoked.cancelled)
    clock.now += 5
    g.sweep()
    assert idle.cancelled and revoked.cancelled and not busy.cancelled


def test_health_watch_streams_count_against_the_anonymous_bound_and_are_released():
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from ueba.server import build_server
    from ueba.settings import BaseSettings

    cfg = BaseSettings.from_env({}, listen="127.0.0.1:0", metrics_port=-1, max_anonymous_streams=2)
    server, port = build_server(cfg, [], max_workers=4)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            watches = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=10) for _ in range(4)]
            firsts = []
            for watch in watches:
                try:
                    firsts.append(next(watch).status)
                except grpc.RpcError as exc:
                    firsts.append(exc.code())
            # The four calls race to the server: which two are admitted is not fixed, how many is.
            assert sorted(map(str, firsts)) == sorted(map(str, [health_pb2.HealthCheckResponse.SERVING] * 2
                                                          + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2)), firsts
            for watch in watches:
                watch.cancel()
            guard = next(b for b in server.background if isinstance(b, StreamGuard))
            eventually(lambda: guard.open_count() == 0, timeout=5)
            assert next(stub.Watch(health_pb2.HealthCheckRequest(), timeout=10)).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(0).wait()
