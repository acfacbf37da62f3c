"""Scorer runs over leased buckets, in process: the same scores as one full run, and fencing."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest

from services.scorer.runs import ScheduledBuckets
from tests.scorer.conftest import SCORED_DAY, constructed_activity, make_scorer
from ueba.db import libpq_url
from ueba.leases import LeaseManager

N = 6
TTL = 1.0
WINDOW = (SCORED_DAY, SCORED_DAY + timedelta(days=1))
FIRE = SCORED_DAY + timedelta(days=1, minutes=5)


def _db(databases, prefix):
    name, url = databases.new(prefix)
    constructed_activity().write(url)
    return name, url


def _scores(url):
    with psycopg.connect(libpq_url(url)) as conn:
        events = conn.execute("SELECT user_name, hour, model, score FROM event_scores ORDER BY 1, 2, 3").fetchall()
        days = conn.execute("SELECT user_name, day, score, learning FROM user_scores ORDER BY 1, 2").fetchall()
        found = conn.execute("SELECT user_name, dedup_key, risk_score FROM anomalies ORDER BY 2").fetchall()
        groups = conn.execute("SELECT id, members FROM peer_groups ORDER BY 1").fetchall()
    return events, days, found, groups


def settled(scorer, names):
    """Lease managers, one per name, that have shared the buckets out."""
    managers = [LeaseManager(scorer.engine, "scorer", name, N, ttl=60, heartbeat=15) for name in names]
    for m in managers:
        m.ensure_pool()
    for _ in range(3):
        for m in managers:
            m.beat()
    return managers


def full_and_split(two_databases):
    """One full run done in the first database; a scorer for replicas' runs in the second."""
    full_url, split_url = two_databases
    full = make_scorer(full_url, UEBA_BUCKETS=str(N))
    whole = full.run("default", *WINDOW)
    assert whole.status == "succeeded"
    full.engine.dispose()
    return whole, make_scorer(split_url, UEBA_BUCKETS=str(N))


@pytest.fixture
def two_databases(migrated_databases):
    names = [_db(migrated_databases, "ueba_scale_full"), _db(migrated_databases, "ueba_scale_split")]
    yield [url for _, url in names]
    for name, _ in names:
        migrated_databases.drop(name)


def test_bucketed_runs_score_exactly_like_one_full_run(two_databases):
    full_url, split_url = two_databases
    full = make_scorer(full_url, UEBA_BUCKETS=str(N))
    assert full.run("default", *WINDOW).status == "succeeded"
    split = make_scorer(split_url, UEBA_BUCKETS=str(N))
    managers = settled(split, "abc")
    runs = [split.run("default", *WINDOW, trigger="schedule", scheduled=ScheduledBuckets(FIRE, m.owned(), m))
            for m in managers]
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert sorted(b for r in runs for b in r.figures["buckets"]) == list(range(N))
    assert sum(r.figures["users_scored"] for r in runs) == 13  # every user once
    assert _scores(split_url) == _scores(full_url)
    # The same fire again: every bucket is already scored, nothing runs twice.
    again = split.run("default", *WINDOW, trigger="schedule", scheduled=ScheduledBuckets(FIRE, managers[0].owned(), managers[0]))
    assert again.status == "succeeded" and again.figures["buckets"] == [] and again.figures["users_scored"] == 0
    full.engine.dispose()
    split.engine.dispose()


def test_a_replica_paused_past_its_lease_cannot_write(migrated_databases):
    name, url = _db(migrated_databases, "ueba_scale_fence")
    try:
        scorer = make_scorer(url, UEBA_BUCKETS=str(N))
        a = LeaseManager(scorer.engine, "scorer", "a", N, ttl=TTL, heartbeat=TTL / 4)
        b = LeaseManager(scorer.engine, "scorer", "b", N, ttl=TTL, heartbeat=TTL / 4)
        a.ensure_pool()
        tokens = a.beat()
        assert len(tokens) == N

        def pause(stage):
            if stage == "anomalies":  # everything written, not committed: a stalls past its expiry
                time.sleep(TTL + 0.3)
                assert len(b.beat()) == N

        scorer.fail_point = pause
        lost = scorer.run("default", *WINDOW, trigger="schedule", scheduled=ScheduledBuckets(FIRE, tokens, a))
        assert lost.status == "failed" and "LeaseLost" in lost.error
        with psycopg.connect(libpq_url(url)) as conn:
            assert conn.execute("SELECT count(*) FROM event_scores").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM scorer_buckets").fetchone()[0] == 0
        scorer.fail_point = None
        taken = scorer.run("default", *WINDOW, trigger="schedule", scheduled=ScheduledBuckets(FIRE, b.owned(), b))
        assert taken.status == "succeeded" and taken.figures["users_scored"] == 13
        scorer.engine.dispose()
    finally:
        migrated_databases.drop(name)


def _stored(url):
    """Everything a run stores of a score: event scores with their features (expected, observed, share)."""
    with psycopg.connect(libpq_url(url)) as conn:
        events = conn.execute("SELECT user_name, hour, model, score, features::text, learning FROM event_scores"
                              " ORDER BY 1, 2, 3").fetchall()
        days = conn.execute("SELECT user_name, day, score, scored_hours, learning, top_features::text"
                            " FROM user_scores ORDER BY 1, 2").fetchall()
        groups = conn.execute("SELECT id, members, profile::text FROM peer_groups ORDER BY 1").fetchall()
    return events, days, groups


def test_replicas_store_the_same_features_as_one_full_run_and_hold_less(two_databases):
    full_url, split_url = two_databases
    whole, split = full_and_split(two_databases)
    runs = [split.run("default", *WINDOW, trigger="schedule", scheduled=ScheduledBuckets(FIRE, m.owned(), m))
            for m in settled(split, "abc")]
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert _stored(split_url) == _stored(full_url)
    # Each replica held its own users' baseline arrays whole and only profiles and group sums of the rest.
    assert all(0 < r.figures["baseline_bytes"] < whole.figures["baseline_bytes"] for r in runs)
    split.engine.dispose()
