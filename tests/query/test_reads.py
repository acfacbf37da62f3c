"""The read pool: statements planned for their values on request, and its JSON decoding."""

from __future__ import annotations

import json
import math

import pytest
from sqlalchemy import text

from services.query.store.reads import Reads, json_loads
from ueba.db import create_db_engine

# More executions than psycopg's prepare threshold (5) on one connection.
RUNS = 8
STATEMENT = text("SELECT count(*) FROM anomalies WHERE tenant = :tenant AND description ILIKE :pattern")
PREPARED = text("SELECT count(*) FROM pg_prepared_statements WHERE statement ILIKE '%description ILIKE%'")


@pytest.fixture
def reads(database_url):
    engine = create_db_engine(database_url, pool_size=1)
    one = Reads(engine, pool_size=1)  # one connection: every call below runs on it
    yield one
    one.stop()
    engine.dispose()


def test_an_unprepared_statement_is_never_prepared_on_the_connection(reads):
    for _ in range(RUNS):
        assert reads.all(STATEMENT, {"tenant": "t-reads", "pattern": "%x%"}, prepared=False)[0][0] == 0
    assert reads.one(PREPARED)[0] == 0
    with reads.engine.connect() as conn:
        assert conn.connection.driver_connection.prepare_threshold == 5  # restored for the other statements


def test_statements_are_prepared_by_default(reads):
    for _ in range(RUNS):
        reads.all(STATEMENT, {"tenant": "t-reads", "pattern": "%x%"})
    assert reads.one(PREPARED)[0] == 1


@pytest.mark.parametrize("raw", [
    b'["id", "alice", 42, {"count": 3, "event_ids": ["e1"]}, 1796664347038649, null, 0.1, 18446744073709551615]',
    b'{"small": -0.0, "exact": 3.0000000000000004, "text": "caf\\u00e9 \\"q\\""}',
])
def test_json_is_decoded_as_the_standard_decoder_does(raw):
    assert json_loads(raw) == json.loads(raw)


def test_an_integer_beyond_64_bits_is_the_double_a_struct_would_hold():
    assert json_loads(b"[123456789012345678901234567890]") == [float(123456789012345678901234567890)]


def test_json_beyond_a_double_falls_back_to_the_standard_decoder():
    assert json_loads(b"[1e400]") == [math.inf]
