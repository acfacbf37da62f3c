"""The ECS parser's shape-compiled reading gives the events (and errors) of flattening every record."""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ueba.parsers import ParseError, ParseOptions
from ueba.parsers.fields import MAPPED_NAMES, EcsParser, event_from_fields, flatten
from ueba.parsers.shapes import ShapeReaders

OPTS = ParseOptions()

BASE = {
    "@timestamp": "2026-02-03T04:05:06.789Z",
    "event": {"category": ["authentication"], "action": "user-login", "outcome": "success", "id": "a-1", "module": "vpn"},
    "user": {"name": "alice"},
    "source": {"ip": "203.0.113.9", "geo": {"country_iso_code": "de", "city_name": "Berlin", "location": {"lat": 52.5, "lon": 13.4}}},
    "host": {"name": "VPN-GW1"},
    "agent": {"type": "filebeat", "version": "8.15.0"},
}

# Records of BASE's top-level keys whose shape or values differ where a compiled reader must notice.
VARIANTS = [
    {**BASE, "user": {"name": {"first": "alice"}}},  # an object where the shape had a value
    {**BASE, "user": "bob"},  # a value where the shape had an object
    {**BASE, "user": {"name": "alice", "email": "a@example.com"}},  # one more mapped field
    {**BASE, "user": {}},  # an empty object is a value to flatten
    {**BASE, "source": {"ip": "203.0.113.9", "geo.city_name": "Paris", "geo": {"country_iso_code": "fr"}}},
    {**BASE, "source": {"ip": "203.0.113.9", "geo": {"city_name": "Rome", "city": {"name": "Roma"}}}},
    {**BASE, "event": {"action": "user-login", "id": 7}},
    {**BASE, "event": {"category": "iam", "action": "", "type": ["change"], "id": "a-2"}},
    {**BASE, "agent": {"type": {"nested": True}}},  # unmapped objects may change freely
    {**BASE, "@timestamp": 1770000000},
    {**BASE, "@timestamp": "not a time"},
    {**BASE, "user": {"name": ""}, "event": {"action": "user-login", "outcome": "failure"}},
    {**BASE, "user": {"name": ""}},  # no account and not a failure: an error
    {"user.name": "carol", "user": {"name": "dave"}, "@timestamp": "2026-02-03T04:05:06Z", "event.action": "logon"},
    {"user": {"name": "dave"}, "user.name": "carol", "@timestamp": "2026-02-03T04:05:06Z", "event.action": "logon"},
    {"action": {"x": 1}, "@timestamp": "2026-02-03T04:05:06Z", "user": {"name": "erin"}, "event": {"action": "logon"}},
    {"action": "file-download", "@timestamp": "2026-02-03T04:05:06Z", "user": {"name": "erin"}, "event": {"action": "logon"}},
]


def general(doc: dict) -> tuple:
    try:
        return ("event", event_from_fields(doc, "ecs", OPTS).SerializeToString(deterministic=True))
    except (ParseError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return ("error", type(exc).__name__, str(exc))


def compiled(parser: EcsParser, doc: dict) -> tuple:
    try:
        return ("event", parser.parse(orjson.dumps(doc).decode())[0].SerializeToString(deterministic=True))
    except (ParseError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return ("error", type(exc).__name__, str(exc))


def test_every_variant_after_its_shape_was_compiled_maps_as_flattening_does():
    parser = EcsParser(OPTS)
    for doc in [BASE, *VARIANTS, BASE, *reversed(VARIANTS)]:
        assert compiled(parser, doc) == general(doc), json.dumps(doc)


def test_a_reader_gives_flattens_values_for_the_mapped_names():
    readers = ShapeReaders(MAPPED_NAMES)
    for doc in [BASE, *VARIANTS]:
        read = readers.read(doc)
        wanted = {k: v for k, v in flatten(doc).items() if k in MAPPED_NAMES}
        if read is not None:
            assert {k: v for k, v in read[0].items() if k in MAPPED_NAMES} == wanted, json.dumps(doc)


_KEYS = st.sampled_from(["user", "name", "source", "ip", "geo", "city_name", "event", "action", "outcome", "category",
                         "@timestamp", "host", "agent", "user.name", "event.action", "location", "lat", "lon"])
_LEAVES = st.one_of(st.sampled_from(["alice", "user-login", "failure", "10.0.0.1", "2026-02-03T04:05:06Z", "", "-"]),
                    st.integers(-5, 5), st.floats(-90, 90), st.none(), st.lists(st.sampled_from(["iam", "file"]), max_size=2))
_DOCS = st.recursive(_LEAVES, lambda inner: st.dictionaries(_KEYS, inner, max_size=5), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_KEYS, _DOCS, min_size=1, max_size=6), min_size=1, max_size=6))
def test_random_records_map_as_flattening_does(docs):
    parser = EcsParser(OPTS)  # one parser for the lot: later records meet readers compiled from earlier ones
    for doc in docs + docs:
        assert compiled(parser, doc) == general(doc)
