"""Hostile input to ingest and query: malformed, oversize, deeply nested, adversarial.

Every call ends with a clear status (OK with per-event rejections, or
INVALID_ARGUMENT / NOT_FOUND / RESOURCE_EXHAUSTED), never UNKNOWN or
INTERNAL; the valid events of a batch are kept; nothing is written that
should not be.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, insert, select

from ueba.store.schema import anomalies, events
from ueba.v1 import common_pb2, ingest_pb2, query_pb2

from .rpcs import RPCS_BY_NAME, call

BAD = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE)
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NOW = datetime.now(timezone.utc)

EPOCH = 0
YEAR_9999 = 253_402_300_799  # the last second a Timestamp may hold
YEAR_1 = -62_135_596_800

hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=3000),
    st.sampled_from(["\x00", "a\x00b", "x" * 5000, "' OR 1=1 --", "\ud7ff\ufffe", "CORP\\", "@", " ", "\u202e" * 10]),
)


@st.composite
def hostile_event(draw) -> common_pb2.Event:
    e = common_pb2.Event(
        event_id=draw(st.one_of(st.just(""), hostile_text)),
        user=draw(hostile_text),
        type=draw(st.integers(-3, 20)),
        outcome=draw(st.integers(-1, 4)),
        source_ip=draw(st.one_of(hostile_text, st.sampled_from(["10.0.0.256", "::ffff:1.2.3.4", "1.2.3.4/8", "fe80::1%eth0"]))),
        destination_host=draw(hostile_text),
        application=draw(hostile_text),
        bytes=draw(st.integers(-(2**63), 2**63 - 1)),
        file_count=draw(st.integers(-(2**31), 2**31 - 1)),
        logon_type=draw(st.integers(-(2**31), 2**31 - 1)),
        user_agent=draw(hostile_text),
    )
    e.time.seconds = draw(st.sampled_from([EPOCH, YEAR_9999, YEAR_1, -1, 10**15, -(10**15), int(NOW.timestamp()) - 60]))
    e.time.nanos = draw(st.sampled_from([0, 999_999_999, -1, 2_000_000_000]))
    if draw(st.booleans()):
        e.geo.latitude = draw(st.floats(allow_nan=True, allow_infinity=True))
        e.geo.longitude = draw(st.floats(allow_nan=True, allow_infinity=True))
        e.geo.has_coordinates = True
        e.geo.country_code = draw(hostile_text)
    for k, v in draw(st.dictionaries(hostile_text, hostile_text, max_size=80)).items():
        e.attributes[k] = v
    return e


def good_event(run: str, i: int) -> common_pb2.Event:
    e = common_pb2.Event(event_id=f"good-{run}-{i}", user=f"good-user-{i % 3}", type=common_pb2.EVENT_TYPE_LOGON,
                         outcome=common_pb2.OUTCOME_SUCCESS, source_ip="192.0.2.10")
    e.time.FromDatetime(NOW - timedelta(minutes=30 + i))
    return e


@pytest.fixture(scope="module")
def hostile_tenant(stack):
    tenant = f"hostile-{uuid.uuid4().hex[:8]}"
    return tenant, stack.token(tenant, "admin", "hostile-admin")


def _stored(engine, tenant: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events).where(events.c.tenant == tenant)).scalar_one()


@PROPERTY
@given(bad=st.lists(hostile_event(), min_size=1, max_size=25), good=st.integers(1, 5), data=st.data())
def test_a_batch_of_hostile_events_keeps_its_valid_events(stack, hostile_tenant, bad, good, data):
    tenant, token = hostile_tenant
    run = uuid.uuid4().hex[:8]
    goods = [good_event(run, i) for i in range(good)]
    batch = list(bad)
    for g in goods:
        batch.insert(data.draw(st.integers(0, len(batch))), g)
    good_at = {i for i, e in enumerate(batch) if e.event_id.startswith(f"good-{run}-")}
    before = _stored(stack.engine, tenant)
    try:
        ack = call(stack.channel("ingest"), RPCS_BY_NAME["IngestEvents"], ingest_pb2.EventBatch(batch_id=run, events=batch), token)
    except grpc.RpcError as exc:
        # Only the message limit may refuse a whole batch of valid-looking size.
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (exc.code(), exc.details())
        assert _stored(stack.engine, tenant) == before
        return
    assert ack.accepted + ack.duplicates + ack.rejected == len(batch)
    rejected_at = {r.index for r in ack.rejections}
    assert not rejected_at & good_at, [r for r in ack.rejections if r.index in good_at]
    assert all(r.field and r.reason for r in ack.rejections)
    assert _stored(stack.engine, tenant) == before + ack.accepted
    with stack.engine.connect() as conn:
        kept = set(conn.execute(select(events.c.event_id).where(events.c.tenant == tenant, events.c.event_id.like(f"good-{run}-%"))).scalars())
    assert kept == {g.event_id for g in goods}


def test_times_at_the_edges_are_rejected_by_name(stack, hostile_tenant):
    tenant, token = hostile_tenant
    batch = []
    for i, seconds in enumerate((EPOCH, YEAR_9999, YEAR_1, 10**15)):
        e = good_event("edges", i)
        e.time.seconds = seconds
        batch.append(e)
    batch.append(good_event("edges", 9))
    ack = call(stack.channel("ingest"), RPCS_BY_NAME["IngestEvents"], ingest_pb2.EventBatch(events=batch), token)
    assert ack.accepted == 1 and ack.rejected == 4
    assert {(r.index, r.field) for r in ack.rejections} == {(i, "time") for i in range(4)}


# --- bytes no protobuf library would send -------------------------------------------------------

def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    key = (number << 3) | 2
    length, out = len(payload), bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([key]) + bytes(out) + payload


INVALID_UTF8 = b"bad-\xff\xfe-\xc3\x28"
RAW = {
    # EventBatch{events: [Event{user: <invalid UTF-8>}]}
    "IngestEvents": _field(2, _field(1, b"raw-1") + _field(3, INVALID_UTF8)),
    "StreamEvents": _field(2, _field(1, b"raw-2") + _field(3, INVALID_UTF8)),
    # ListAnomaliesRequest{filter: {query: <invalid UTF-8>}}
    "ListAnomalies": _field(1, _field(8, INVALID_UTF8)),
    # ExportLogsServiceRequest{resource_logs: [{scope_logs: [{log_records: [{severity_text: <invalid>}]}]}]}
    "Export": _field(1, _field(2, _field(2, _field(3, INVALID_UTF8)))),
    "GetUser": _field(1, INVALID_UTF8),
    "CreateProfile": _field(1, _field(2, INVALID_UTF8)),
    "GetScoringRun": _field(1, INVALID_UTF8),
    "Truncated": b"\x12\xff\xff\xff\x0f",  # a field longer than the message
}


@pytest.mark.parametrize("name", sorted(RAW))
def test_undecodable_requests_are_invalid_argument(stack, hostile_tenant, name):
    _tenant, token = hostile_tenant
    rpc = RPCS_BY_NAME.get(name, RPCS_BY_NAME["IngestEvents"])
    channel = stack.channel(rpc.service)
    md = (("authorization", f"Bearer {token}"),)
    before = _stored(stack.engine, _tenant)
    with pytest.raises(grpc.RpcError) as err:
        if rpc.client_streaming:
            list(channel.stream_stream(rpc.path)(iter([RAW[name]]), metadata=md, timeout=30))
        else:
            channel.unary_unary(rpc.path)(RAW[name], metadata=md, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.value.code(), err.value.details())
    assert "not a valid message" in err.value.details()
    assert _stored(stack.engine, _tenant) == before


def test_deeply_nested_values_get_a_status(stack, hostile_tenant):
    """OTLP bodies nested 30, 60 and 5,000 levels deep (built as bytes: the protobuf library refuses to)."""
    tenant, token = hostile_tenant
    md = (("authorization", f"Bearer {token}"),)
    export = stack.channel("ingest").unary_unary(RPCS_BY_NAME["Export"].path)
    codes = {}
    for depth in (30, 60, 5000):
        value = _field(1, b"leaf")  # AnyValue{string_value}
        for _ in range(depth):
            # AnyValue{kvlist_value: KeyValueList{values: [KeyValue{key: "k", value: <value>}]}}
            value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))
        when = int(NOW.timestamp() * 1e9).to_bytes(8, "little")
        record = b"\x09" + when + _field(5, value)  # LogRecord{time_unix_nano (fixed64), body}
        request = _field(1, _field(2, _field(2, record)))
        try:
            export(request, metadata=md, timeout=60)
            codes[depth] = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            codes[depth] = exc.code()
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (depth, exc.code(), exc.details())
    assert codes[30] == grpc.StatusCode.OK and codes[5000] == grpc.StatusCode.INVALID_ARGUMENT


# --- query ------------------------------------------------------------------------------------

SQL_BITS = ["' OR '1'='1", "'; DROP TABLE anomalies; --", "\") OR 1=1 --", "user:alice' --", "risk>=high) OR (1=1",
            "%", "_", "\\", "\x00", "profile:*", "user:", ":", "\"unterminated", "risk>=", "risk>=ultra", "time>now()",
            "status:new OR status:resolved", "user:" + "a" * 3000, "$$", "/*", "*/", "::text", "tenant:default"]
query_text = st.lists(st.one_of(st.sampled_from(SQL_BITS), st.text(max_size=20)), max_size=6).map(" ".join)


@pytest.fixture(scope="module")
def query_tenant(stack):
    tenant = f"hq-{uuid.uuid4().hex[:8]}"
    other = f"hq-other-{uuid.uuid4().hex[:8]}"
    with stack.engine.begin() as conn:
        for t, user in ((tenant, "alice"), (tenant, "bob"), (other, "mallory")):
            conn.execute(insert(anomalies).values(
                tenant=t, user_name=user, source="rule", profile_id="p1", profile_name="failed logins", profile_kind="failed_logins",
                risk_score=70, description="d", dimension="authentication", time=NOW - timedelta(hours=1),
                window_start=NOW - timedelta(hours=2), window_end=NOW - timedelta(hours=1), dedup_key=uuid.uuid4().hex,
            ))
    return tenant, stack.token(tenant, "analyst", "hq-analyst")


def _anomaly_rows(engine):
    with engine.connect() as conn:
        return sorted((r.tenant, r.user_name, r.status) for r in conn.execute(select(anomalies.c.tenant, anomalies.c.user_name, anomalies.c.status)))


@PROPERTY
@given(
    query=query_text,
    users=st.lists(hostile_text, max_size=3),
    profiles=st.lists(hostile_text, max_size=2),
    order=st.one_of(st.just(""), st.sampled_from(["time desc", "risk desc", "time asc; DROP TABLE x", "user"]), st.text(max_size=15)),
    token_text=st.one_of(st.just(""), st.text(max_size=60), st.binary(max_size=40).map(lambda b: b.hex())),
    size=st.integers(-5, 5000),
)
def test_adversarial_anomaly_filters_get_a_clear_status_and_change_nothing(stack, query_tenant, query, users, profiles, order, token_text, size):
    tenant, token = query_tenant
    before = _anomaly_rows(stack.engine)
    request = query_pb2.ListAnomaliesRequest(
        filter=query_pb2.AnomalyFilter(query=query, users=users, profiles=profiles), order_by=order, page_token=token_text, page_size=size,
    )
    try:
        page = call(stack.channel("query"), RPCS_BY_NAME["ListAnomalies"], request, token)
        assert {a.user for a in page.anomalies} <= {"alice", "bob"}
    except grpc.RpcError as exc:
        # NOT_FOUND: an empty page explained by a user or profile this tenant has never had.
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT or (
            exc.code() == grpc.StatusCode.NOT_FOUND and exc.details().startswith(("user ", "profile "))
        ), (exc.code(), exc.details())
    for name, req in (
        ("GetSummary", query_pb2.GetSummaryRequest(top_users=min(abs(size), 100))),
        ("ExportAnomalies", query_pb2.ExportAnomaliesRequest(filter=request.filter)),
        ("ListUsers", query_pb2.ListUsersRequest(user_prefix=query[:100], department=query[:50], page_token=token_text)),
        ("GetUser", query_pb2.GetUserRequest(user=query)),
        ("GetAnomaly", query_pb2.GetAnomalyRequest(id=query)),
    ):
        try:
            out = call(stack.channel("query"), RPCS_BY_NAME[name], req, token)
            if name == "ExportAnomalies":
                assert b"mallory" not in b"".join(c.data for c in out)
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (name, exc.code(), exc.details())
    assert _anomaly_rows(stack.engine) == before


@PROPERTY
@given(query=query_text, ids=st.lists(st.one_of(hostile_text, st.uuids().map(str)), max_size=3))
def test_adversarial_reviews_touch_nothing_they_should_not(stack, query_tenant, query, ids):
    tenant, _ = query_tenant
    admin = stack.token(tenant, "admin", "hq-admin") if not hasattr(stack, "_hq_admin") else stack._hq_admin
    stack._hq_admin = admin
    before = _anomaly_rows(stack.engine)
    request = query_pb2.ReviewAnomaliesRequest(action=query_pb2.REVIEW_ACTION_ACKNOWLEDGE, ids=ids,
                                              filter=query_pb2.AnomalyFilter(query=query, users=["nobody-here"]))
    try:
        reply = call(stack.channel("query"), RPCS_BY_NAME["ReviewAnomalies"], request, admin)
        assert reply.updated == 0  # the filter names a user with no anomalies; ids are random
    except grpc.RpcError as exc:
        assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (exc.code(), exc.details())
    assert _anomaly_rows(stack.engine) == before


def test_like_wildcards_in_a_prefix_match_literally(stack, query_tenant):
    tenant, token = query_tenant
    from ueba.store.schema import users as users_table

    with stack.engine.begin() as conn:
        for name in ("alice", "bob"):
            conn.execute(insert(users_table).values(tenant=tenant, user_name=name, first_seen=NOW - timedelta(days=9), last_seen=NOW))
    for prefix in ("%", "_", "a%", "%e"):
        page = call(stack.channel("query"), RPCS_BY_NAME["ListUsers"], query_pb2.ListUsersRequest(user_prefix=prefix, include_ignored=True), token)
        assert list(page.users) == [], prefix
    page = call(stack.channel("query"), RPCS_BY_NAME["ListUsers"], query_pb2.ListUsersRequest(user_prefix="al", include_ignored=True), token)
    assert [u.risk.user for u in page.users] == ["alice"]
