"""ListAnomalies, GetAnomaly and ExportAnomalies through a real server on real Postgres."""

import csv
import io
from datetime import timedelta

import grpc
import pytest
from sqlalchemy import func, select, text

from ueba.store.schema import anomalies
from ueba.v1 import common_pb2, query_pb2

from .conftest import NOW, rpc_error


def ids_of(response):
    return [a.id for a in response.anomalies]


def listed(svc, **filter_fields):
    query = filter_fields.pop("query", "")
    return ids_of(svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(
        filter=query_pb2.AnomalyFilter(query=query, **filter_fields), page_size=1000)))


@pytest.fixture
def sample(store):
    s = store
    t = NOW - timedelta(hours=2)
    return {
        "alice_fail": s.anomaly("alice", 95, t, kind="failed_logins", description="12 failed logins from a new country"),
        "alice_dl": s.anomaly("alice", 45, t - timedelta(hours=1), kind="bulk_download", dimension="data", description="bulk download of 900 files", status="acknowledged"),
        "bob_model": s.anomaly("bob", 72, t - timedelta(hours=2), kind="origin_location", source="model", dimension="location", description="login from a new country"),
        "carol_low": s.anomaly("carol", 20, t - timedelta(days=3), kind="rare_event", dimension="host", description="rare event 100%_done"),
    }


def test_filters_each_field(svc, sample):
    s = sample
    assert set(listed(svc)) == set(s.values())
    assert listed(svc, risk_levels=[common_pb2.RISK_LEVEL_CRITICAL]) == [s["alice_fail"]]
    assert set(listed(svc, risk_levels=[common_pb2.RISK_LEVEL_HIGH, common_pb2.RISK_LEVEL_MEDIUM])) == {s["alice_dl"], s["bob_model"]}
    assert listed(svc, profiles=["bulk download"]) == [s["alice_dl"]]  # by name
    assert listed(svc, profiles=["p-rare_event"]) == [s["carol_low"]]  # by id
    assert listed(svc, profiles=["origin_location"]) == [s["bob_model"]]  # by kind
    assert listed(svc, source=common_pb2.ANOMALY_SOURCE_MODEL) == [s["bob_model"]]
    assert len(listed(svc, source=common_pb2.ANOMALY_SOURCE_RULE)) == 3
    assert listed(svc, statuses=[common_pb2.ANOMALY_STATUS_ACKNOWLEDGED]) == [s["alice_dl"]]
    assert set(listed(svc, users=["ALICE"])) == {s["alice_fail"], s["alice_dl"]}
    assert listed(svc, dimensions=["host"]) == [s["carol_low"]]
    rng = common_pb2.TimeRange()
    rng.start.FromDatetime(NOW - timedelta(days=1))
    assert s["carol_low"] not in listed(svc, range=rng)


def test_query_string(svc, sample):
    s = sample
    assert listed(svc, query='user:alice risk>=high "new country"') == [s["alice_fail"]]
    assert set(listed(svc, query='"new country"')) == {s["alice_fail"], s["bob_model"]}
    assert listed(svc, query="user:alice user:bob source:model") == [s["bob_model"]]
    assert set(listed(svc, query="-user:alice")) == {s["bob_model"], s["carol_low"]}
    assert listed(svc, query="model:origin_location") == [s["bob_model"]]
    assert set(listed(svc, query="status:open risk<50")) == {s["carol_low"]}
    assert listed(svc, query=f"id:{s['alice_dl']}") == [s["alice_dl"]]
    assert set(listed(svc, query="after:1d")) == {s["alice_fail"], s["alice_dl"], s["bob_model"]}


def test_query_string_with_and_or_not_and_parentheses(svc, sample):
    s = sample
    assert listed(svc, query="risk>=high AND user:alice") == [s["alice_fail"]]
    assert listed(svc, query="risk>=high and user:alice") == [s["alice_fail"]]
    assert set(listed(svc, query="user:carol OR source:model")) == {s["bob_model"], s["carol_low"]}
    assert set(listed(svc, query="NOT user:alice")) == set(listed(svc, query="-user:alice"))
    assert set(listed(svc, query='(user:alice OR user:bob) AND NOT "new country"')) == {s["alice_dl"]}
    assert listed(svc, query="user:alice AND user:bob") == []  # explicit AND: both must hold
    assert set(listed(svc, query='"or" OR "logins"')) == {s["alice_fail"]}


def test_an_empty_result_from_a_name_nobody_has_says_so_with_the_nearest_names(svc, sample):
    err = rpc_error(lambda: listed(svc, query="user:alicia"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "user 'alicia': no such user (did you mean 'alice'?)"
    err = rpc_error(lambda: listed(svc, query="profile:failed_login"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "did you mean 'failed_logins'" in err.details()
    assert listed(svc, query="user:alice source:model") == []  # known names: an empty page, not an error


@pytest.mark.parametrize("query,fragment", [
    ("user:alice OR", "the query ends where a term was expected"),
    ("(user:alice", "'(' is never closed"),
    ("user:alice)", "')' has no '('"),
    ("AND user:alice", "'AND' where a term was expected; quote it"),
])
def test_misplaced_operators_are_invalid_argument_naming_the_problem(svc, query, fragment):
    err = rpc_error(lambda: listed(svc, query=query))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in err.details()


def test_wildcards_in_text_are_literal(svc, sample):
    assert listed(svc, query='"100%_done"') == [sample["carol_low"]]
    assert listed(svc, query='"100%x"') == []
    assert listed(svc, query="_") == [sample["carol_low"]]  # the only description with an underscore


def test_hostile_query_is_text_and_harms_nothing(svc, store, sample):
    trap = store.anomaly("mallory", 30, description="note: '; DROP TABLE anomalies; -- was typed here")
    assert listed(svc, query="'; DROP TABLE anomalies; --") == [trap]
    assert listed(svc, query="\"' OR '1'='1\"") == []
    assert listed(svc, query="\"x'); DELETE FROM anomalies; --\"") == []
    assert store.rows(select(func.count()).select_from(anomalies).where(anomalies.c.tenant == store.tenant))[0][0] == 5


@pytest.mark.parametrize(
    "query,token",
    [("colour:red", "'colour:red'"), ('"open quote', "unbalanced quote"), ("risk>=extreme", "'risk>=extreme'"), ("x" * 5000, "longer than"),
     ("after:999999d", "'after:999999d'"), ("before:9999-01-01", "'before:9999-01-01'")],
)
def test_bad_query_is_invalid_argument_naming_the_token(svc, query, token):
    err = rpc_error(svc.stub.ListAnomalies, query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(query=query)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert token in err.details() and err.details().startswith("filter.query")


def test_bad_filter_fields(svc):
    for f, field in [
        (query_pb2.AnomalyFilter(risk_levels=[common_pb2.RISK_LEVEL_UNSPECIFIED]), "filter.risk_levels[0]"),
        (query_pb2.AnomalyFilter(dimensions=["weather"]), "filter.dimensions[0]"),
        (query_pb2.AnomalyFilter(users=["a\x00b"]), "filter.users[0]"),
    ]:
        err = rpc_error(svc.stub.ListAnomalies, query_pb2.ListAnomaliesRequest(filter=f))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.details()
    err = rpc_error(svc.stub.ListAnomalies, query_pb2.ListAnomaliesRequest(order_by="user asc"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "order_by" in err.details()
    err = rpc_error(svc.stub.ListAnomalies, query_pb2.ListAnomaliesRequest(page_size=-1))
    assert "page_size" in err.details()


def walk(svc, order_by, page_size, between_pages=None, **filter_fields):
    seen, token, pages = [], "", 0
    while True:
        resp = svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(
            filter=query_pb2.AnomalyFilter(**filter_fields), order_by=order_by, page_size=page_size, page_token=token))
        seen.extend(resp.anomalies)
        pages += 1
        token = resp.next_page_token
        if not token:
            return seen, pages
        if between_pages:
            between_pages(pages)


@pytest.mark.parametrize("order_by", ["time desc", "time asc", "risk desc"])
def test_pagination_is_stable_across_inserts(svc, store, order_by):
    base = NOW - timedelta(hours=5)
    # Equal times and equal scores so that the id tie-break matters.
    original = {store.anomaly("u%d" % (i % 4), 10 + (i % 5) * 20, base + timedelta(minutes=(i // 3) * 7)) for i in range(30)}

    def insert_more(page):
        store.anomaly("late", 99, NOW - timedelta(minutes=page))  # newest, highest
        store.anomaly("late", 1, base - timedelta(days=1))  # oldest, lowest
        store.anomaly("late", 50, base + timedelta(minutes=14))  # in the middle, same time as others

    seen, pages = walk(svc, order_by, 4, insert_more)
    ids = [a.id for a in seen]
    assert len(ids) == len(set(ids)), "a row was repeated"
    assert original <= set(ids), "a row was skipped"
    assert pages >= 8
    key = {"time desc": lambda a: (-a.time.ToNanoseconds(),), "time asc": lambda a: (a.time.ToNanoseconds(),),
           "risk desc": lambda a: (-a.risk_score, -a.time.ToNanoseconds())}[order_by]
    assert [key(a) for a in seen] == sorted(key(a) for a in seen)


def test_page_tokens_are_checked(svc, store):
    for i in range(3):
        store.anomaly("a", 50)
    first = svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(page_size=1))
    assert first.next_page_token and first.total_size == 3 and not first.total_size_capped
    err = rpc_error(svc.stub.ListAnomalies, query_pb2.ListAnomaliesRequest(page_size=1, page_token="garbage!"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.details()
    err = rpc_error(svc.stub.ListAnomalies, query_pb2.ListAnomaliesRequest(
        page_size=1, page_token=first.next_page_token, filter=query_pb2.AnomalyFilter(query="user:a")))
    assert "different query" in err.details()
    second = svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(page_size=5, page_token=first.next_page_token))
    assert len(second.anomalies) == 2 and second.total_size == 3 and not second.next_page_token


@pytest.mark.parametrize("query_settings", [{"count_limit": 5}])
def test_total_size_is_capped(svc, store):
    for i in range(7):
        store.anomaly("a", 50)
    resp = svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(page_size=2))
    assert resp.total_size == 5 and resp.total_size_capped


def test_get_anomaly_with_evidence(svc, store):
    aid = store.anomaly("alice", 91, evidence={"event_ids": ["e1", "e2"], "count": 12, "threshold": 10, "countries": ["FR", "KP"]})
    got = svc.stub.GetAnomaly(query_pb2.GetAnomalyRequest(id=aid))
    assert got.user == "alice" and got.risk_level == common_pb2.RISK_LEVEL_CRITICAL and got.status == common_pb2.ANOMALY_STATUS_NEW
    assert list(got.evidence["event_ids"]) == ["e1", "e2"] and got.evidence["count"] == 12
    assert list(got.evidence["countries"]) == ["FR", "KP"]
    assert got.profile_kind == "failed_logins" and got.source == common_pb2.ANOMALY_SOURCE_RULE
    assert rpc_error(svc.stub.GetAnomaly, query_pb2.GetAnomalyRequest(id="not-a-uuid")).code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = rpc_error(svc.stub.GetAnomaly, query_pb2.GetAnomalyRequest(id="00000000-0000-0000-0000-000000000000"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


def export(svc, **filter_fields):
    chunks = [c.data for c in svc.stub.ExportAnomalies(query_pb2.ExportAnomaliesRequest(filter=query_pb2.AnomalyFilter(**filter_fields)))]
    return chunks, list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))


def test_export_csv(svc, store, engine):
    store.anomaly("alice", 80, description="=HYPERLINK(\"http://evil\")")
    store.anomaly("bob", 30, description="plain, with a comma and \"quotes\"\nand a new line")
    chunks, rows = export(svc)
    assert len(rows) == 2
    by_user = {r["user"]: r for r in rows}
    assert by_user["alice"]["description"].startswith("'=HYPERLINK")  # never a formula in a spreadsheet
    assert by_user["bob"]["description"] == "plain, with a comma and \"quotes\"\nand a new line"
    assert by_user["alice"]["risk_level"] == "high" and by_user["alice"]["risk_score"] == "80"
    assert '"event_ids"' in by_user["alice"]["evidence"]
    chunks, rows = export(svc, query="user:nobody")
    assert len(chunks) == 1 and rows == [] and chunks[0].startswith(b"id,time,user")


def test_export_streams_in_bounded_chunks(svc, store, engine):
    with engine.begin() as conn:  # 5,000 rows straight in SQL, quicker than one by one
        conn.execute(text(
            """INSERT INTO anomalies (tenant, user_name, source, profile_id, profile_name, profile_kind, risk_score,
                   description, dimension, time, window_start, window_end, dedup_key)
               SELECT :t, 'u' || (g % 50), 'rule', 'p', 'p', 'failed_logins', 1 + g % 100, repeat('x', 100),
                   'authentication', now() - g * interval '1 minute', now() - g * interval '1 minute',
                   now() - g * interval '1 minute', 'bulk' || g FROM generate_series(1, 5000) g"""), {"t": store.tenant})
    chunks, rows = export(svc)
    assert len(rows) == 5000 and len({r["id"] for r in rows}) == 5000
    assert len(chunks) > 5
    assert max(len(c) for c in chunks) < 70 * 1024
