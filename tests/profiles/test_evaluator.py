"""The continuous evaluator against a real Postgres: commit order, restarts, changes."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from services.profiles.evaluator import ProfileEvaluator
from services.profiles.store import definitions, tailing
from tests.profiles.dbutil import INSERT, add_profile, connect, insert_events, row, stored_anomalies
from tests.profiles.factory import LONDON, NEW_YORK, TOKYO, event
from ueba.store.partitions import ensure_partitions
from ueba.store.schema import profile_cursors


def drain(evaluator: ProfileEvaluator, limit: int = 1000) -> int:
    total = 0
    for _ in range(limit):
        n = evaluator.run_once()
        total += n
        if n == 0:
            return total
    raise AssertionError("evaluator never caught up")


def test_next_snapshot_keeps_running_transactions_invisible():
    assert tailing.next_snapshot("10:20:12", "15:30:15,25", None) == "15:30:15,25"
    # Up to 21: 15 still running, 25 beyond the page.
    assert tailing.next_snapshot("10:20:12", "15:30:15,25", 21) == "15:22:15"
    assert tailing.next_snapshot("10:20:", "20:30:", 24) == "25:25:"
    assert tailing.next_snapshot("10:20:", "20:30:", 29) == "20:30:"


def test_out_of_order_commits_are_not_skipped(fresh_database_url, fresh_engine):
    add_profile(fresh_engine, "failed_logins", count=2, interval_seconds=600, spray_users=0)
    evaluator = ProfileEvaluator(fresh_engine, seed_defaults=False)
    first, second = event("ann", at=0, outcome="failure"), event("ann", at=30, outcome="failure")
    with connect(fresh_database_url) as setup:
        ensure_partitions(setup, {first.time.date()})
    early = connect(fresh_database_url, autocommit=False)
    late = connect(fresh_database_url, autocommit=False)
    try:
        early.execute(INSERT, row(first, "default"))  # takes the lower transaction id ...
        early_txid = int(early.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
        late.execute(INSERT, row(second, "default"))
        late_txid = int(late.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
        late.commit()  # ... but commits second
        assert early_txid < late_txid
        assert drain(evaluator) == 1  # only the committed row
        assert stored_anomalies(fresh_engine) == []
        early.commit()
        # A watermark on the highest txid seen would now skip `first` for good.
        assert drain(evaluator) == 1
    finally:
        early.close()
        late.close()
    found = stored_anomalies(fresh_engine)
    assert len(found) == 1
    assert sorted(found[0].evidence["event_ids"]) == sorted([first.event_id, second.event_id])
    assert found[0].source == "rule" and found[0].profile_kind == "failed_logins"
    assert evaluator.processed == 2


def burst_events():
    """Bursts of several kinds for several users over a few hours."""
    events = []
    for u in range(6):
        user = f"user{u}"
        for burst in range(3):
            base = u * 97 + burst * 1800
            events += [event(user, "logon", base + i * 20, outcome="failure", source_ip=f"198.51.100.{u}") for i in range(6)]
            events += [event(user, "file_download", base + 300 + i, file_count=10) for i in range(12)]
        events.append(event(user, "logon", 9000 + u, NEW_YORK))
        events.append(event(user, "logon", 9600 + u, LONDON))
    return sorted(events, key=lambda e: e.ts)


def setup_profiles(engine):
    add_profile(engine, "failed_logins", count=5, interval_seconds=600, spray_users=0)
    add_profile(engine, "bulk_download", file_count=100, bytes=0, interval_seconds=600)
    add_profile(engine, "proximity")


def summary(engine):
    return sorted((a.profile_name, a.user_name, a.window_start, a.dedup_key) for a in stored_anomalies(engine))


def test_restart_mid_way_gives_no_duplicates_and_no_gaps(fresh_database_url, fresh_engine, server_url, monkeypatch):
    setup_profiles(fresh_engine)
    events = burst_events()
    insert_events(fresh_database_url, events, per_transaction=7)

    # The reference: one evaluator takes everything in one go.
    reference = ProfileEvaluator(fresh_engine, seed_defaults=False, batch_events=100_000)
    drain(reference)
    expected = summary(fresh_engine)
    assert len(expected) >= 6 * 3 * 2 + 6  # every burst and every trip
    with fresh_engine.begin() as conn:
        conn.execute(text("DELETE FROM anomalies"))
        conn.execute(profile_cursors.delete())

    # Small pages; the process "dies" after a few, and once more in the middle of a batch.
    first = ProfileEvaluator(fresh_engine, seed_defaults=False, batch_events=40)
    for _ in range(4):
        first.run_once()
    partial = summary(fresh_engine)
    assert 0 < len(partial) < len(expected)

    crashing = ProfileEvaluator(fresh_engine, seed_defaults=False, batch_events=40)
    crashing.run_once()
    real_write = tailing.write_cursor

    def crash(*args, **kwargs):
        raise RuntimeError("power cut before commit")

    monkeypatch.setattr(tailing, "write_cursor", crash)
    with pytest.raises(RuntimeError):
        crashing.run_once()
    monkeypatch.setattr(tailing, "write_cursor", real_write)

    second = ProfileEvaluator(fresh_engine, seed_defaults=False, batch_events=40)
    drain(second)
    got = summary(fresh_engine)
    assert [g[:3] for g in got] == [e[:3] for e in expected]
    assert len({g[3] for g in got}) == len(got)


def test_evaluator_seeds_new_tenants_and_follows_profile_changes(fresh_database_url, fresh_engine):
    evaluator = ProfileEvaluator(fresh_engine)
    insert_events(fresh_database_url, [event("kim", "logon", 0, country="KP")], tenant="acme")
    drain(evaluator)
    found = stored_anomalies(fresh_engine, "acme")
    assert [a.profile_kind for a in found] == ["risky_countries"]
    with fresh_engine.begin() as conn:
        assert definitions.seed_defaults(conn, "acme") == 0  # idempotent
        risky = [r for r in definitions.list_profiles(conn, "acme", kind="risky_countries", enabled_only=False,
                                                 after_name=None, limit=10)][0]
        definitions.update_profile(conn, "acme", str(risky.id), {"enabled": False})
    insert_events(fresh_database_url, [event("lee", "logon", 10, country="KP")], tenant="acme")
    drain(evaluator)
    assert len(stored_anomalies(fresh_engine, "acme")) == 1  # disabled: nothing new
    add_profile(fresh_engine, "risky_countries", name="Only KP", tenant="acme", countries=["KP"])
    insert_events(fresh_database_url, [event("max", "logon", 20, country="KP")], tenant="acme")
    drain(evaluator)
    assert [a.user_name for a in stored_anomalies(fresh_engine, "acme")] == ["kim", "max"]


def test_state_is_rebuilt_from_the_store_after_a_restart(fresh_database_url, fresh_engine):
    add_profile(fresh_engine, "failed_logins", count=4, interval_seconds=600, spray_users=0)
    add_profile(fresh_engine, "proximity")
    insert_events(fresh_database_url, [event("ned", "logon", i * 10, outcome="failure") for i in range(2)]
                  + [event("ned", "logon", 30, NEW_YORK)])
    drain(ProfileEvaluator(fresh_engine, seed_defaults=False))
    assert stored_anomalies(fresh_engine) == []
    # A new process: the window (2 failures) and the last location must come back from the store.
    restarted = ProfileEvaluator(fresh_engine, seed_defaults=False)
    insert_events(fresh_database_url, [event("ned", "logon", 40 + i * 10, outcome="failure") for i in range(2)]
                  + [event("ned", "logon", 600, LONDON)])
    drain(restarted)
    kinds = sorted(a.profile_kind for a in stored_anomalies(fresh_engine))
    assert kinds == ["failed_logins", "proximity"]


def test_the_users_networks_are_seeded_from_the_store_after_a_restart(fresh_database_url, fresh_engine):
    add_profile(fresh_engine, "proximity")
    vpn_exit, hotel, day = "203.0.113.9", "198.51.100.7", 86400
    # The VPN exit in use on days 0-3, older than the replay (a day) after a restart: only the seeded
    # history can say it is vic's. Day 4 holds the tenant's position.
    insert_events(fresh_database_url, [event("vic", "app_access", d * day, LONDON, source_ip=vpn_exit) for d in range(4)]
                  + [event("vic", "app_access", 4 * day, LONDON)])
    drain(ProfileEvaluator(fresh_engine, seed_defaults=False))
    restarted = ProfileEvaluator(fresh_engine, seed_defaults=False)
    # Landed in Tokyo after a flight, then back and forth between the hotel and the VPN exiting in London.
    trip = [event("vic", "logon", 4 * day + 14 * 3600, TOKYO, source_ip=hotel)]
    trip += [event("vic", "app_access", 4 * day + 15 * 3600 + i * 600, LONDON if i % 2 else TOKYO,
                   source_ip=vpn_exit if i % 2 else hotel) for i in range(6)]
    insert_events(fresh_database_url, trip)
    drain(restarted)
    assert stored_anomalies(fresh_engine) == []


def test_background_worker_raises_anomalies_as_events_commit(fresh_database_url, fresh_engine):
    import time

    add_profile(fresh_engine, "risky_countries", countries=["IR"])
    evaluator = ProfileEvaluator(fresh_engine, seed_defaults=False, poll_seconds=0.1)
    evaluator.start()
    try:
        insert_events(fresh_database_url, [event("oli", "logon", 0, country="IR")])
        deadline = time.monotonic() + 30
        while not stored_anomalies(fresh_engine) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        evaluator.stop()
    assert [a.user_name for a in stored_anomalies(fresh_engine)] == ["oli"]
    with fresh_engine.connect() as conn:
        assert conn.execute(select(profile_cursors.c.snapshot)).scalar()


def _wait_for_anomalies(engine, n: int, seconds: float) -> float:
    """Seconds until `n` anomalies are stored; fails after `seconds`."""
    import time

    started = time.monotonic()
    while len(stored_anomalies(engine)) < n:
        if time.monotonic() - started > seconds:
            raise AssertionError(f"fewer than {n} anomalies after {seconds} s")
        time.sleep(0.02)
    return time.monotonic() - started


def _idle(evaluator: ProfileEvaluator) -> None:
    """Until the evaluator listens and has finished the rounds its start and connection began."""
    import time

    assert evaluator.listener.connected.wait(30)
    deadline = time.monotonic() + 30
    while evaluator.wake.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1.0)  # the round the last wake began


def test_an_announced_commit_wakes_the_evaluator_long_before_its_poll(fresh_database_url, fresh_engine):
    add_profile(fresh_engine, "risky_countries", countries=["IR"])
    evaluator = ProfileEvaluator(fresh_engine, seed_defaults=False, poll_seconds=60)
    evaluator.start()
    try:
        _idle(evaluator)
        insert_events(fresh_database_url, [event("oli", "logon", 0, country="IR")], announce=True)
        assert _wait_for_anomalies(fresh_engine, 1, seconds=10) < 10  # the poll would take 60
    finally:
        evaluator.stop()
    assert [a.user_name for a in stored_anomalies(fresh_engine)] == ["oli"]


def test_the_listener_reconnects_and_commits_missed_meanwhile_are_taken_by_the_poll(fresh_database_url, fresh_engine):
    add_profile(fresh_engine, "risky_countries", countries=["IR"])
    evaluator = ProfileEvaluator(fresh_engine, seed_defaults=False, poll_seconds=2)
    evaluator.listener.retry_seconds = 3  # long enough that the commits below happen while it is away
    evaluator.start()
    try:
        _idle(evaluator)
        lost = evaluator.listener.backend_pid
        with connect(fresh_database_url) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (lost,)).fetchone()[0]
        # Not announced (as when the announcement went to a listener that was away): the poll finds it.
        insert_events(fresh_database_url, [event("oli", "logon", 0, country="IR")])
        _wait_for_anomalies(fresh_engine, 1, seconds=15)
        assert evaluator.listener.connected.wait(30)
        assert evaluator.listener.backend_pid not in (None, lost)
        evaluator.poll_seconds = 60  # from here on only an announcement can wake it in time
        _idle(evaluator)
        insert_events(fresh_database_url, [event("ivy", "logon", 0, country="IR")], announce=True)
        assert _wait_for_anomalies(fresh_engine, 2, seconds=10) < 10
    finally:
        evaluator.stop()
    assert sorted(a.user_name for a in stored_anomalies(fresh_engine)) == ["ivy", "oli"]
