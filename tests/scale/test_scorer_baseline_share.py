"""Replicas of one fire load only their own buckets' baselines and read the others' (baseline_share)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import text

from services.scorer import baseline_share
from services.scorer.runs import ScheduledBuckets
from tests.scale.test_scorer_buckets import (  # noqa: F401 (fixture)
    FIRE,
    N,
    WINDOW,
    _scores,
    full_and_split,
    settled,
    two_databases,
)
from tests.scorer.conftest import make_scorer
from ueba.db import libpq_url


def _published(url):
    with psycopg.connect(libpq_url(url)) as conn:
        return sorted(tuple(b) for (b,) in conn.execute("SELECT buckets FROM scorer_baselines").fetchall())


def _running(url, owner, buckets):
    """A scheduled run of FIRE by `owner` over `buckets`, left `running`."""
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(
            """INSERT INTO scoring_runs (tenant, status, trigger, range_start, range_end, figures)
               VALUES ('default', 'running', 'schedule', %s, %s, %s)""",
            (*WINDOW, Jsonb({"buckets": buckets, "fire": FIRE.isoformat(), "owner": owner})))


def _never_waits(monkeypatch):
    """Sharing baselines fails instead of polling for another replica's."""

    def never(seconds):
        raise AssertionError("waited for another replica's baselines")

    monkeypatch.setattr(baseline_share, "time", SimpleNamespace(monotonic=time.monotonic, sleep=never))


def test_concurrent_replicas_share_baselines_and_score_like_one_full_run(two_databases):
    full_url, split_url = two_databases
    full = make_scorer(full_url, UEBA_BUCKETS=str(N))
    assert full.run("default", *WINDOW).status == "succeeded"
    assert _published(full_url) == []  # a run over every bucket has nobody to share with
    replicas = [make_scorer(split_url, UEBA_BUCKETS=str(N)) for _ in range(3)]  # an engine each, as processes
    managers = settled(replicas[0], "abc")
    # Every replica has loaded its own buckets (and its run is visibly running) before
    # any looks for the others': each must then wait for, not load, the others' buckets.
    barrier = threading.Barrier(3, timeout=60)
    runs = [None] * 3
    shares = sorted(tuple(sorted(m.owned())) for m in managers)

    def replica(i):
        m, scorer = managers[i], replicas[i]
        scorer.fail_point = lambda stage: barrier.wait() if stage == "baselines" else None
        runs[i] = scorer.run("default", *WINDOW, trigger="schedule", scheduled=ScheduledBuckets(FIRE, m.owned(), m))

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [r.status for r in runs] == ["succeeded"] * 3, [r.error for r in runs]
    assert _published(split_url) == shares
    assert sum(r.figures["users_scored"] for r in runs) == 13
    assert _scores(split_url) == _scores(full_url)
    full.engine.dispose()
    for scorer in replicas:
        scorer.engine.dispose()


def test_a_replica_loads_the_buckets_of_a_dead_peer_and_publishes_them(two_databases, monkeypatch):
    full_url, split_url = two_databases
    full = make_scorer(full_url, UEBA_BUCKETS=str(N))
    assert full.run("default", *WINDOW).status == "succeeded"
    split = make_scorer(split_url, UEBA_BUCKETS=str(N))
    a, b = settled(split, "ab")
    # b died scoring this fire: its run is still `running`, its leases have expired. a does
    # not wait for it (never polls) and loads b's buckets itself.
    _running(split_url, b.owner, sorted(b.owned()))
    with psycopg.connect(libpq_url(split_url)) as conn:
        conn.execute("UPDATE work_leases SET expires_at = now() - interval '1 second' WHERE owner = %s", (b.owner,))
    _never_waits(monkeypatch)
    ran = split.run("default", *WINDOW, trigger="schedule", scheduled=ScheduledBuckets(FIRE, a.owned(), a))
    assert ran.status == "succeeded", ran.error
    assert _published(split_url) == sorted([tuple(sorted(a.owned())), tuple(sorted(b.owned()))])
    # b, back, takes every other bucket of the fire from what a published.
    b.beat()
    late = split.run("default", *WINDOW, trigger="schedule", scheduled=ScheduledBuckets(FIRE, b.owned(), b))
    assert late.status == "succeeded"
    assert _published(split_url) == sorted([tuple(sorted(a.owned())), tuple(sorted(b.owned()))])
    assert _scores(split_url) == _scores(full_url)
    # A new state of the data (another window) shares nothing with the old one.
    other = (WINDOW[0] - timedelta(days=1), WINDOW[0])
    assert split.run("default", *other, trigger="schedule",
                     scheduled=ScheduledBuckets(FIRE + timedelta(days=1), a.owned(), a)).status == "succeeded"
    assert len(_published(split_url)) == 4
    full.engine.dispose()
    split.engine.dispose()


def test_a_replica_does_not_wait_for_a_run_queued_behind_its_bucket_locks(two_databases, monkeypatch):
    _, url = two_databases
    scorer = make_scorer(url, UEBA_BUCKETS=str(N))
    a, b = settled(scorer, "ab")
    # b's run of the fire was planned with one of a's buckets (the leases moved since): it
    # waits for a's bucket lock, so a must not wait for its publication.
    _running(url, b.owner, sorted(b.owned()) + [min(a.owned())])
    _never_waits(monkeypatch)
    ran = scorer.run("default", *WINDOW, trigger="schedule", scheduled=ScheduledBuckets(FIRE, a.owned(), a))
    assert ran.status == "succeeded", ran.error
    assert _published(url) == sorted([tuple(sorted(a.owned())), tuple(sorted(b.owned()))])
    scorer.engine.dispose()


def test_a_bucket_whose_publication_is_gone_before_it_is_summed_is_loaded_again(two_databases, monkeypatch):
    full_url, split_url = two_databases
    _, split = full_and_split(two_databases)
    a, b = settled(split, "ab")
    fetch, gone = baseline_share.fetch, []

    def expired(auto, *args):
        # Publications past KEEP are deleted by the next publisher: here, between the two passes.
        gone.append(auto.execute(text("DELETE FROM scorer_baseline_buckets")).rowcount)
        found = fetch(auto, *args)
        assert found is None
        return found

    monkeypatch.setattr(baseline_share, "fetch", expired)
    for m in (a, b):
        ran = split.run("default", *WINDOW, trigger="schedule", scheduled=ScheduledBuckets(FIRE, m.owned(), m))
        assert ran.status == "succeeded", ran.error
    assert gone and gone[0] > 0
    assert _scores(split_url) == _scores(full_url)
    split.engine.dispose()
