"""The shared vocabulary: account names, timestamps, page tokens and error statuses."""

from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.exc import ProgrammingError

from ueba import paging
from ueba.errors import InvalidArgument, NotFound, status_of
from ueba.names import canonical_user, user_name_normaliser
from ueba.settings import BaseSettings, SettingsError
from ueba.timestamps import from_proto, to_proto


@pytest.mark.parametrize(
    ("raw", "strip", "qualified", "exact"),
    [
        ("CORP\\Alice", "alice", "alice@corp", "CORP\\Alice"),
        ("alice@corp.com", "alice", "alice@corp.com", "alice@corp.com"),
        ("  Alice ", "alice", "alice", "Alice"),
        ("", "", "", ""),
    ],
)
def test_every_mode_gives_one_stored_form(raw, strip, qualified, exact):
    assert canonical_user(raw, "strip_domain") == strip
    assert canonical_user(raw, "qualified") == qualified
    assert canonical_user(raw, "exact") == exact
    assert user_name_normaliser("qualified")(raw) == qualified


def test_an_unknown_mode_is_refused_by_the_settings():
    with pytest.raises(SettingsError, match="UEBA_USER_NAME_MODE"):
        BaseSettings.from_env({"UEBA_USER_NAME_MODE": "fancy"})
    with pytest.raises(ValueError, match="fancy"):
        canonical_user("alice", "fancy")


def test_timestamps_round_trip_and_out_of_range_values_name_the_field():
    when = datetime(2026, 12, 7, 4, 30, 1, 250000, tzinfo=timezone.utc)
    assert from_proto(to_proto(when), "time") == when
    with pytest.raises(InvalidArgument, match=r"range\.end: seconds"):
        from_proto(Timestamp(seconds=253402300799), "range.end")  # 9999-12-31
    with pytest.raises(InvalidArgument, match=r"day: nanos"):
        from_proto(Timestamp(seconds=1, nanos=-5), "day")


def test_page_tokens_are_bound_to_their_query_and_refuse_forgeries():
    now = datetime(2026, 12, 7, tzinfo=timezone.utc)
    token = paging.encode("fp1", paging.PageToken(["alice", 7], now))
    assert paging.decode("fp1", token, (str, int)).key == ["alice", 7]
    with pytest.raises(InvalidArgument, match="different query"):
        paging.decode("fp2", token, (str, int))
    for forged in ("not-a-token", "eyJrIjpbMV19", "A" * 5000, token[:-3]):
        with pytest.raises(InvalidArgument, match="page_token"):
            paging.decode("fp1", forged, (str, int))


def test_only_domain_errors_reach_the_caller_in_their_own_words():
    assert status_of(NotFound("user: no user 'bob'"), "/m") == (grpc.StatusCode.NOT_FOUND, "user: no user 'bob'")
    leak = ProgrammingError("SELECT secret FROM anomalies WHERE x = %(x)s", {"x": 1}, Exception("syntax"))
    code, message = status_of(leak, "/m")
    assert code == grpc.StatusCode.INTERNAL
    assert "SELECT" not in message and "anomalies" not in message and "reference" in message
