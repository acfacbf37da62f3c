"""Validation, normalisation and in-batch deduplication of events (no database)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from services.ingest.normalise import AddressBook
from ueba.names import user_name_normaliser
from services.ingest.pipeline import preparer_from
from services.ingest.prepare import decode_row, derived_event_id
from ueba.settings import SettingsError
from ueba.v1 import common_pb2

from .conftest import make_event, settings
from .mmdb import city_record, write_mmdb

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def prepare(events, **overrides):
    return preparer_from(settings(**overrides)).prepare("acme", events, now=NOW.timestamp())


def event(**fields):
    fields.setdefault("time", NOW - timedelta(hours=1))
    return make_event(**fields)


def only_row(events, **overrides) -> dict:
    batch = prepare(events, **overrides)
    assert batch.rejections == [] and len(batch.rows) == 1
    return decode_row(batch.rows[0])


def test_valid_event_becomes_a_normalised_row():
    when = datetime(2026, 11, 20, 10, 30, 15, 123456, tzinfo=timezone.utc)
    row = only_row([
        event(
            event_id="e-1", time=when, user="CORP\\Alice", type=common_pb2.EVENT_TYPE_FILE_DOWNLOAD,
            outcome=common_pb2.OUTCOME_FAILURE, source_ip="10.1.2.3", destination_ip="2001:DB8:0::1",
            source_host="ws-1", application="sharepoint", bytes=2048, file_count=3, logon_type=10,
            department="Finance", attributes={"b": "2", "a": "1"},
        )
    ])  # fmt: skip
    assert row["tenant"] == "acme"
    assert row["event_id"] == "e-1"
    assert row["time"] == when  # microseconds kept
    assert row["user_name"] == "alice"
    assert row["event_type"] == "file_download"
    assert row["outcome"] == "failure"
    assert row["source_ip"] == "10.1.2.3"
    assert row["destination_ip"] == "2001:db8::1"
    assert (row["bytes"], row["file_count"], row["logon_type"]) == (2048, 3, 10)
    assert row["department"] == "Finance"
    assert row["attributes"] == {"a": "1", "b": "2"}
    assert row["destination_host"] is None and row["object"] is None  # absent, not empty
    assert row["trusted_source"] is False


@pytest.mark.parametrize(
    "raw, expected",
    [("CORP\\Alice", "alice"), ("alice@corp.example.com", "alice"), ("  Alice ", "alice"), ("a.b\\c\\Bob", "bob")],
)
def test_account_names_lose_their_domain_by_default(raw, expected):
    assert user_name_normaliser("strip_domain")(raw) == expected


def test_qualified_mode_keeps_the_domain_and_exact_mode_keeps_everything():
    qualified = user_name_normaliser("qualified")
    assert qualified("CORP\\Alice") == "alice@corp"
    assert qualified("Alice@Corp.Example") == "alice@corp.example"
    assert qualified("alice") == "alice"
    assert user_name_normaliser("exact")(" CORP\\Alice ") == "CORP\\Alice"
    row = only_row([event(user="CORP\\Alice")], user_name_mode="qualified")
    assert row["user_name"] == "alice@corp"


def test_a_failure_naming_no_account_is_kept_for_its_source_and_makes_no_account():
    failed = common_pb2.OUTCOME_FAILURE
    batch = prepare([
        event(event_id="by-ip", user="", outcome=failed, source_ip="192.0.2.7"),
        event(event_id="by-host", user="  ", outcome=failed, source_host="n219076184117.netvigator.com"),
        event(event_id="named", user="root", outcome=failed, source_ip="192.0.2.7"),
    ])  # fmt: skip
    assert batch.rejections == []
    rows = {r["event_id"]: r for r in map(decode_row, batch.rows)}
    assert (rows["by-ip"]["user_name"], rows["by-ip"]["source_ip"]) == ("", "192.0.2.7")
    assert (rows["by-host"]["user_name"], rows["by-host"]["source_host"]) == ("", "n219076184117.netvigator.com")
    assert set(batch.users) == {"root"}  # no account named '' (or 'unknown') is recorded


REJECTED = [
    ("missing user", {"user": ""}, "user"),
    ("missing user of a success with a source", {"user": "", "source_ip": "192.0.2.1"}, "user"),
    ("missing user of a failure without a source", {"user": "", "outcome": common_pb2.OUTCOME_FAILURE}, "user"),
    ("only a domain", {"user": "CORP\\"}, "user"),
    ("missing time", {"time": None}, "time"),
    ("far future", {"time": NOW + timedelta(hours=1)}, "time"),
    ("far past", {"time": NOW - timedelta(days=401)}, "time"),
    ("malformed source ip", {"source_ip": "10.0.0.300"}, "source_ip"),
    ("source ip with prefix", {"source_ip": "10.0.0.0/8"}, "source_ip"),
    ("leading zeros", {"source_ip": "010.0.0.1"}, "source_ip"),
    ("malformed destination ip", {"destination_ip": "host.example"}, "destination_ip"),
    ("unspecified type", {"type": common_pb2.EVENT_TYPE_UNSPECIFIED}, "type"),
    ("unknown type", {"type": 99}, "type"),
    ("unknown outcome", {"outcome": 7}, "outcome"),
    ("oversize field", {"user_agent": "x" * 3000}, "user_agent"),
    ("NUL in a field", {"source_host": "ws\x001"}, "source_host"),
    ("negative bytes", {"bytes": -1}, "bytes"),
    ("negative file count", {"file_count": -2}, "file_count"),
    ("logon type beyond smallint", {"logon_type": 40000}, "logon_type"),
    ("bad country code", {"geo": common_pb2.GeoLocation(country_code="Germany")}, "geo.country_code"),
    ("latitude out of range", {"geo": common_pb2.GeoLocation(latitude=91, longitude=1, has_coordinates=True)}, "geo.latitude"),
    ("NaN longitude", {"geo": common_pb2.GeoLocation(latitude=1, longitude=math.nan, has_coordinates=True)}, "geo.longitude"),
    ("too many attributes", {"attributes": {f"k{i}": "v" for i in range(65)}}, "attributes"),
    ("oversize attribute", {"attributes": {"k": "v" * 3000}}, "attributes"),
]


@pytest.mark.parametrize("fields, field", [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_a_bad_event_is_rejected_with_index_and_field_and_the_rest_kept(fields, field):
    events = [event(event_id="ok-1"), event(event_id="bad", **fields), event(event_id="ok-2")]
    batch = prepare(events)
    assert [decode_row(r)["event_id"] for r in batch.rows] == ["ok-1", "ok-2"]
    assert len(batch.rejections) == 1
    rejection = batch.rejections[0]
    assert (rejection.index, rejection.field, rejection.event_id) == (1, field, "bad")
    assert rejection.reason


def test_limits_are_configurable_and_zero_disables_the_age_limits():
    assert prepare([event(time=NOW + timedelta(hours=1))], max_future_seconds=7200).rejections == []
    assert prepare([event(time=NOW - timedelta(days=3000))], max_past_days=0, retention_days=0).rejections == []
    assert prepare([event(user_agent="x" * 100)], max_field_length=50).rejections[0].field == "user_agent"


def test_events_older_than_retention_are_rejected_even_within_the_age_limit():
    batch = prepare([event(time=NOW - timedelta(days=40))], max_past_days=400, retention_days=30)
    assert batch.rejections[0].field == "time"
    assert "retention" in batch.rejections[0].reason


def _with_raw_time(seconds: int, nanos: int) -> common_pb2.Event:
    ev = event()
    ev.time.seconds, ev.time.nanos = seconds, nanos
    return ev


TIME_REASONS = [
    ("missing", event(time=None), "missing"),
    ("nanos beyond a second", _with_raw_time(int(NOW.timestamp()), 1_000_000_000), "not a valid timestamp"),
    ("beyond year 9999", _with_raw_time(253402300800, 0), "not a valid timestamp"),
    ("ahead", event(time=NOW + timedelta(hours=1)), "more than 900 seconds in the future"),
    ("behind", event(time=NOW - timedelta(days=401)), "more than 400 days in the past"),
]


@pytest.mark.parametrize("bad, reason", [r[1:] for r in TIME_REASONS], ids=[r[0] for r in TIME_REASONS])
def test_a_rejected_time_says_which_check_it_failed(bad, reason):
    batch = prepare([bad], max_past_days=400, retention_days=0)
    assert [(r.field, r.reason) for r in batch.rejections] == [("time", reason)]


def test_country_codes_are_stored_upper_case_and_bad_ones_rejected_each_time_they_come():
    codes = ("de", "DE", "d1", "de", "d1")
    events = [event(event_id=f"e{i}", geo=common_pb2.GeoLocation(country_code=c)) for i, c in enumerate(codes)]
    batch = prepare(events)
    assert [decode_row(r)["country"] for r in batch.rows] == ["DE", "DE", "DE"]
    assert [(r.index, r.field) for r in batch.rejections] == [(2, "geo.country_code"), (4, "geo.country_code")]


def test_a_repeated_event_in_one_batch_counts_as_a_duplicate():
    first = event(event_id="same")
    later = event(event_id="same", time=NOW - timedelta(minutes=5))  # same id, other time: another row
    batch = prepare([first, first, later, first])
    assert len(batch.rows) == 2
    assert batch.duplicates == 2


def test_events_without_id_get_a_stable_id_from_their_content():
    a = event(user="bob", source_ip="10.0.0.1", attributes={"x": "1", "y": "2"})
    same = event(user="bob", source_ip="10.0.0.1", attributes={"y": "2", "x": "1"})
    other = event(user="bob", source_ip="10.0.0.2")
    same.time.CopyFrom(a.time)
    other.time.CopyFrom(a.time)
    assert derived_event_id(a) == derived_event_id(same)
    assert derived_event_id(a) != derived_event_id(other)
    batch = prepare([a, same, other])
    ids = [decode_row(r)["event_id"] for r in batch.rows]
    assert ids == [derived_event_id(a), derived_event_id(other)]
    assert batch.duplicates == 1


def test_trusted_networks_mark_the_source():
    events = [event(source_ip="10.20.0.5"), event(source_ip="192.0.2.7"), event(source_ip="::ffff:10.20.1.1")]
    batch = prepare(events, trusted_networks=("10.20.0.0/16", "2001:db8::/32"))
    rows = [decode_row(r) for r in batch.rows]
    assert [r["trusted_source"] for r in rows] == [True, False, True]
    assert rows[2]["source_ip"] == "10.20.1.1"  # IPv4-mapped IPv6 stored as IPv4


def test_geo_comes_from_the_event_and_is_never_guessed():
    own = common_pb2.GeoLocation(country_code="de", city="Berlin", latitude=52.5, longitude=13.4, has_coordinates=True)
    row = only_row([event(source_ip="81.2.69.160", geo=own)])
    assert (row["country"], row["city"], row["latitude"], row["longitude"]) == ("DE", "Berlin", 52.5, 13.4)
    row = only_row([event(source_ip="81.2.69.160", geo=common_pb2.GeoLocation(country_code="FR"))])
    assert (row["country"], row["city"], row["latitude"], row["longitude"]) == ("FR", None, None, None)
    row = only_row([event(source_ip="81.2.69.160")])  # no database configured: nothing
    assert (row["country"], row["city"], row["latitude"], row["longitude"]) == (None, None, None, None)


def test_geo_from_a_maxmind_database_when_the_event_has_none(tmp_path):
    path = write_mmdb(
        tmp_path / "city.mmdb",
        {"81.2.69.0/24": city_record("GB", "London", 51.5142, -0.0931), "175.16.199.0/24": city_record("CN", "Changchun", 43.88, 125.32)},
    )
    own = common_pb2.GeoLocation(country_code="DE", city="Berlin")
    batch = prepare(
        [event(source_ip="81.2.69.160"), event(source_ip="175.16.199.9", geo=own), event(source_ip="8.8.4.4"),
         event(source_ip="10.0.0.1"), event(source_ip="2001:db8::1")],
        geoip_database=str(path),
    )  # fmt: skip
    rows = [decode_row(r) for r in batch.rows]
    assert [(r["country"], r["city"]) for r in rows] == [
        ("GB", "London"),
        ("DE", "Berlin"),  # the event's own location wins
        (None, None),  # not in the database
        (None, None),  # private address: never looked up
        (None, None),  # IPv6 in an IPv4-only database
    ]
    assert (rows[0]["latitude"], rows[0]["longitude"]) == (51.5142, -0.0931)


def test_user_sightings_keep_first_last_and_latest_department():
    events = [
        event(user="bob", time=NOW - timedelta(hours=3), department="Sales"),
        event(user="CORP\\Bob", time=NOW - timedelta(hours=1), department="Finance"),
        event(user="bob@corp.example", time=NOW - timedelta(hours=5)),
    ]
    batch = prepare(events)
    first, last, department = batch.users["bob"]
    assert first == int((NOW - timedelta(hours=5)).timestamp() * 1e6)
    assert last == int((NOW - timedelta(hours=1)).timestamp() * 1e6)
    assert department == "Finance"
    assert batch.days == {(NOW - timedelta(hours=1)).date()}


def test_address_book_parses_strictly_and_caches():
    book = AddressBook([])
    assert book.lookup("2001:0DB8::0001").text == "2001:db8::1"
    assert book.lookup("fe80::1%eth0") is None
    assert book.lookup(" 10.0.0.1") is None
    assert book.lookup("10.0.0.1") is book.lookup("10.0.0.1")


@pytest.mark.parametrize(
    "env",
    [
        {"UEBA_USER_NAME_MODE": "upper"},
        {"UEBA_TRUSTED_NETWORKS": "10.0.0.0/8,not-a-net"},
        {"UEBA_GEOIP_DATABASE": "/nonexistent/city.mmdb"},
        {"UEBA_MAX_BATCH_SIZE": "0"},
        {"UEBA_OTLP_LISTEN": "4317"},
    ],
)
def test_bad_settings_name_the_variable(env):
    from services.ingest.settings import IngestSettings

    with pytest.raises(SettingsError, match=next(iter(env))):
        IngestSettings.from_env(env)
