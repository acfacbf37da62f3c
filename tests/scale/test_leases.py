"""LeaseManager against real Postgres: claim, fair share, renewal, expiry takeover, rebalancing, fencing."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from ueba.leases import LeaseConfigError, LeaseLost, LeaseManager, buckets_of

N = 8
TTL = 1.0


@pytest.fixture
def engine(fresh_engine):
    return fresh_engine


def manager(engine, owner: str, buckets: int = N, ttl: float = TTL) -> LeaseManager:
    m = LeaseManager(engine, "test", owner, buckets, ttl=ttl, heartbeat=ttl / 4)
    m.ensure_pool()
    return m


def settle(*managers: LeaseManager, rounds: int = 3) -> None:
    for _ in range(rounds):
        for m in managers:
            m.beat()


def assert_partition(*managers: LeaseManager) -> None:
    sets = [set(m.owned()) for m in managers]
    assert set().union(*sets) == set(range(N))
    assert sum(len(s) for s in sets) == N, sets  # disjoint


def test_a_lone_replica_claims_every_bucket(engine):
    m = manager(engine, "a")
    assert m.beat() == {b: 1 for b in range(N)}
    assert m.owned() == {b: 1 for b in range(N)}
    # Renewal keeps the tokens (no change of hands).
    assert m.beat() == {b: 1 for b in range(N)}


def test_replicas_split_buckets_fairly(engine):
    ms = [manager(engine, name) for name in ("a", "b", "c")]
    settle(*ms)
    assert sorted(len(m.owned()) for m in ms) == [2, 3, 3]  # ceil(8 / 3) = 3
    assert_partition(*ms)


def test_renewal_keeps_buckets_past_the_ttl(engine):
    a, b = manager(engine, "a"), manager(engine, "b")
    settle(a, b)
    mine = a.owned()
    for _ in range(6):  # 1.5 ttl, renewing every quarter
        time.sleep(TTL / 4)
        a.beat()
        b.beat()
    assert a.owned() == mine


def test_expired_buckets_are_taken_over_and_tokens_grow(engine):
    a, b = manager(engine, "a"), manager(engine, "b")
    settle(a, b)
    a_buckets = a.owned()
    b.beat()
    assert not set(a_buckets) & set(b.owned())  # not before the expiry
    time.sleep(TTL + 0.2)  # a stops beating, like a killed process
    held = b.beat()
    assert set(held) == set(range(N))
    for bucket, token in a_buckets.items():
        assert held[bucket] == token + 1


def test_returning_replica_gets_its_share_back(engine):
    a, b = manager(engine, "a"), manager(engine, "b")
    settle(a, b)
    b.stop()  # clean stop: released at once
    assert set(a.beat()) == set(range(N))
    c = manager(engine, "c")
    settle(a, c)
    assert sorted(len(m.owned()) for m in (a, c)) == [4, 4]
    assert_partition(a, c)


def test_busy_buckets_are_released_last(engine):
    a = manager(engine, "a")
    a.beat()
    with a.hold(range(N - 4, N)):  # the high buckets, which a release would pick first
        b = manager(engine, "b")
        b.beat()
        a.beat()
    assert set(a.owned()) == set(range(N - 4, N))


def test_fence_rejects_a_replica_whose_bucket_was_taken(engine):
    a, b = manager(engine, "a"), manager(engine, "b")
    settle(a, b)
    tokens = a.owned()
    time.sleep(TTL + 0.2)  # a is paused past its expiry
    b.beat()
    with engine.begin() as conn, pytest.raises(LeaseLost, match="no longer holds"):
        a.fence(conn, tokens)
    with engine.begin() as conn:
        b.fence(conn, b.owned())


def test_fence_passes_when_the_expired_bucket_was_not_taken(engine):
    a = manager(engine, "a")
    tokens = a.beat()
    time.sleep(TTL + 0.2)
    with engine.begin() as conn:
        a.fence(conn, tokens)  # nobody else wrote: still safe to write


def test_a_fenced_transaction_holds_its_buckets_until_commit(engine):
    a, b = manager(engine, "a"), manager(engine, "b")
    a.beat()
    tokens = a.owned()
    time.sleep(TTL + 0.2)
    with engine.begin() as conn:
        a.fence(conn, tokens)  # rows locked FOR SHARE until this commits
        assert b.beat() == {}  # skipped, not waited on
    assert len(b.beat()) == N  # expired and unlocked: taken (a never renewed)


def test_owned_is_empty_once_the_heartbeat_is_older_than_the_ttl(engine):
    a = manager(engine, "a")
    a.beat()
    time.sleep(TTL + 0.1)
    assert a.owned() == {}


def test_replicas_with_another_bucket_count_refuse_to_start(engine):
    manager(engine, "a")
    with pytest.raises(LeaseConfigError, match="UEBA_BUCKETS=16"):
        manager(engine, "b", buckets=16)


def test_heartbeat_thread_and_clean_stop(engine):
    a = LeaseManager(engine, "test", "a", N, ttl=TTL, heartbeat=TTL / 4)
    a.start()
    try:
        time.sleep(TTL * 1.5)
        assert len(a.owned()) == N  # renewed by the thread
    finally:
        a.stop()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM work_leases WHERE owner IS NOT NULL")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM work_lease_members")).scalar_one() == 0


def test_buckets_are_stable_and_spread(engine):
    users = [f"user{i}" for i in range(2000)]
    with engine.connect() as conn:
        first = buckets_of(conn, "default", users, 64)
        again = buckets_of(conn, "default", users, 64)
        other = buckets_of(conn, "acme", users, 64)
    assert first == again and set(first.values()) == set(range(64))
    counts = [list(first.values()).count(b) for b in range(64)]
    assert max(counts) < 3 * 2000 / 64  # no bucket holds a crowd
    assert first != other  # the tenant is part of the hash


def test_fenced_holds_the_lock_in_its_own_transaction_and_rejects_lost_buckets(engine):
    a, b = manager(engine, "a"), manager(engine, "b")
    tokens = a.beat()
    time.sleep(TTL + 0.2)
    with a.fenced(tokens):
        assert b.beat() == {}  # locked while the body (the caller's commit) runs
    b.beat()
    with pytest.raises(LeaseLost):
        with a.fenced(tokens):
            pytest.fail("the body must not run once the buckets moved")
