"""Limits: per-token request rate, message size, batch size; the token cache and bucket."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import create_engine

from ueba.auth.authenticator import AuthError, TokenAuthenticator, TokenCache, bearer_token
from ueba.auth.ratelimit import RateLimiter, TokenBucket
from ueba.auth.tokens import TokenRecord
from ueba.v1 import common_pb2, ingest_pb2

from .conftest import AUTH_ENV, QUIET, create, mint, settings_for
from .rpcs import RPCS_BY_NAME, call, code_of


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.allow("t") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("other")  # each token has its own bucket
    clock.now += 0.5  # one more request's worth at 2/s
    assert [limiter.allow("t") for _ in range(2)] == [True, False]
    clock.now += 100
    assert sum(limiter.allow("t") for _ in range(10)) == 3  # never more than the burst
    assert RateLimiter(rate=0, burst=1).allow("t") and TokenBucket(1, 1, 0).take(0)


def test_token_cache_expires_and_remembers_unknown_tokens():
    clock = Clock()
    cache = TokenCache(5.0, clock)
    record = TokenRecord("id", "t", "n", "admin", "x")
    cache.put("a", record)
    cache.put("b", None)
    assert cache.get("a") == (True, record) and cache.get("b") == (True, None)
    clock.now += 5.0
    assert cache.get("a") == (False, None)


@pytest.mark.parametrize("value, token", [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), ("", None),
])
def test_bearer_token_parsing(value, token):
    assert bearer_token([("authorization", value)]) == token
    assert bearer_token([("other", "Bearer x")]) is None


def test_an_unreachable_token_store_is_unavailable_not_unauthenticated():
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    auth = TokenAuthenticator(engine)
    with pytest.raises(AuthError) as err:
        auth.caller("/ueba.v1.QueryService/GetSummary", [("authorization", "Bearer ueba_x")])
    assert err.value.code == grpc.StatusCode.UNAVAILABLE  # agents retry UNAVAILABLE; they must not give up
    engine.dispose()


@pytest.fixture(scope="module")
def limited_ingest(security_url, security_engine):
    env = {**AUTH_ENV, **QUIET, "UEBA_RATE_LIMIT_PER_SECOND": "0.001", "UEBA_RATE_LIMIT_BURST": "3",
           "UEBA_MAX_MESSAGE_BYTES": str(64 * 1024), "UEBA_MAX_BATCH_SIZE": "50"}
    server, port = create("ingest", settings_for("ingest", security_url, env), security_engine)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(0).wait()


def _event(i: int, user: str = "limits-user", **fields) -> common_pb2.Event:
    e = common_pb2.Event(event_id=f"lim-{user}-{i}", user=user, type=common_pb2.EVENT_TYPE_LOGON, **fields)
    e.time.GetCurrentTime()
    return e


def test_rate_limit_per_token_on_calls(limited_ingest, security_engine):
    _, token = mint(security_engine, "limits", "agent")
    _, other = mint(security_engine, "limits", "agent")
    rpc = RPCS_BY_NAME["IngestEvents"]
    batch = lambda n: ingest_pb2.EventBatch(batch_id=f"b{n}", events=[_event(n)])  # noqa: E731
    codes = [code_of(limited_ingest, rpc, batch(n), token) for n in range(5)]
    assert codes == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
    assert code_of(limited_ingest, rpc, batch(9), other) == grpc.StatusCode.OK


def test_rate_limit_counts_each_streamed_batch(limited_ingest, security_engine):
    _, token = mint(security_engine, "limits", "agent")
    rpc = RPCS_BY_NAME["StreamEvents"]
    call_ = limited_ingest.stream_stream(rpc.path, request_serializer=rpc.request_class.SerializeToString,
                                        response_deserializer=rpc.response_class.FromString)
    batches = [ingest_pb2.EventBatch(batch_id=f"s{n}", events=[_event(100 + n, "stream-user")]) for n in range(5)]
    acks = []
    with pytest.raises(grpc.RpcError) as err:
        for ack in call_(iter(batches), metadata=(("authorization", f"Bearer {token}"),), timeout=30):
            acks.append(ack.batch_id)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    # The call and two more batches fit the burst of 3; the fourth batch is refused, unwritten.
    assert acks == ["s0", "s1", "s2"]
    from sqlalchemy import func, select

    from ueba.store.schema import events

    with security_engine.connect() as conn:
        stored = conn.execute(select(func.count()).where(events.c.tenant == "limits", events.c.user_name == "stream-user")).scalar_one()
    assert stored == 3


def test_message_and_batch_size_limits(limited_ingest, security_engine):
    _, token = mint(security_engine, "limits", "admin")
    rpc = RPCS_BY_NAME["IngestEvents"]
    huge = ingest_pb2.EventBatch(batch_id="huge", events=[_event(0, object="x" * 70_000)])
    try:
        call(limited_ingest, rpc, huge, token)
        raise AssertionError("a message above UEBA_MAX_MESSAGE_BYTES was accepted")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    many = ingest_pb2.EventBatch(batch_id="many", events=[_event(n, "many") for n in range(51)])
    try:
        call(limited_ingest, rpc, many, token)
        raise AssertionError("a batch above UEBA_MAX_BATCH_SIZE was accepted")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "50" in exc.details()
