"""Unit tests of the read routing's decisions and lag arithmetic, and of the replica settings."""

from __future__ import annotations

import math

import pytest

from services.query.store.replica import ReplayPosition, parse_lsn, replay_position, replica_usable
from services.query.settings import QuerySettings
from ueba.settings import SettingsError

PRIMARY = "postgresql://u@primary/ueba"


def test_lsn_orders_across_the_high_word():
    assert parse_lsn("0/16B3748") == 0x16B3748
    assert parse_lsn("1/0") - parse_lsn("0/FFFFFFFF") == 1


def test_caught_up_replica_has_no_lag_however_old_its_last_transaction():
    sample = replay_position(parse_lsn("0/500"), True, "0/500", 3600.0, taken=10.0)
    assert (sample.replayed, sample.lag_seconds, sample.lag_bytes) == (0x500, 0.0, 0)


def test_behind_replica_lags_by_its_last_replayed_transaction_and_the_wal_between():
    sample = replay_position(parse_lsn("0/900"), True, "0/500", 2.5, taken=10.0)
    assert (sample.lag_seconds, sample.lag_bytes) == (2.5, 0x400)
    assert replay_position(parse_lsn("0/900"), True, "0/500", None, 10.0).lag_seconds == math.inf


def test_a_database_that_is_no_standby_counts_as_caught_up():
    sample = replay_position(parse_lsn("0/900"), False, None, None, taken=10.0)
    assert sample.replayed == math.inf and sample.lag_seconds == 0.0


@pytest.mark.parametrize(
    "sample, written, max_lag, now, usable",
    [
        (None, None, 30, 10.0, False),  # nothing sampled yet (or the replica is down)
        (ReplayPosition(10.0, 0x500, 0.1, 10), None, 30, 10.2, True),
        (ReplayPosition(10.0, 0x500, 0.1, 10), None, 30, 12.0, False),  # the sampler is stuck: outdated
        (ReplayPosition(10.0, 0x500, 31.0, 10), None, 30, 10.2, False),  # lags too much
        (ReplayPosition(10.0, 0x500, 31.0, 10), None, 0, 10.2, True),  # 0: no limit
        (ReplayPosition(10.0, 0x500, 0.1, 10), 0x501, 30, 10.2, False),  # the tenant's write is not replayed yet
        (ReplayPosition(10.0, 0x500, 0.1, 10), 0x500, 30, 10.2, True),
    ],
)
def test_replica_usable(sample, written, max_lag, now, usable):
    assert replica_usable(sample, written, max_lag, max_age=1.0, now=now) is usable


def test_replica_settings_are_validated():
    settings = QuerySettings.from_env({"DATABASE_URL": PRIMARY, "UEBA_QUERY_READ_DATABASE_URL": "postgresql://u@replica/ueba"})
    assert settings.read_database_url.endswith("replica/ueba") and settings.replica_max_lag_seconds == 30
    with pytest.raises(SettingsError, match="UEBA_QUERY_READ_DATABASE_URL: needs DATABASE_URL"):
        QuerySettings.from_env({"UEBA_QUERY_READ_DATABASE_URL": "postgresql://u@replica/ueba"})
    with pytest.raises(SettingsError, match="UEBA_QUERY_READ_DATABASE_URL: expected"):
        QuerySettings.from_env({"DATABASE_URL": PRIMARY, "UEBA_QUERY_READ_DATABASE_URL": "mysql://replica"})
    with pytest.raises(SettingsError, match="UEBA_QUERY_REPLICA_MAX_LAG_SECONDS"):
        QuerySettings.from_env({"UEBA_QUERY_REPLICA_MAX_LAG_SECONDS": "-1"})
    with pytest.raises(SettingsError, match="UEBA_QUERY_REPLICA_SAMPLE_SECONDS"):
        QuerySettings.from_env({"UEBA_QUERY_REPLICA_SAMPLE_SECONDS": "0"})
