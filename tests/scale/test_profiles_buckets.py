"""The profiles evaluator on a share of the hash buckets, in-process against a real Postgres:
lanes by cursor, each row read once, the split equal to a single evaluator, takeover, the
upgrade from the single cursor, and fencing with real leases."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from services.profiles.buckets import (
    GLOBAL_CONSUMER, EvaluatorLeases, FixedOwnership, Share, bucket_consumer, ensure_cursors, per_user, plan_lanes,
)
from services.profiles.defaults import DEFAULT_PROFILES
from services.profiles.evaluator import ProfileEvaluator
from services.profiles.kinds import KINDS, ProfileSpec
from services.profiles.store import definitions, events, tailing
from tests.profiles.dbutil import add_profile, insert_events
from tests.profiles.factory import event
from tests.profiles.test_evaluator import burst_events, drain, setup_profiles, summary
from ueba.leases import LeaseLost, LeaseSettings, buckets_of

N = 6


@pytest.fixture
def engine(fresh_engine):
    return fresh_engine


def spec(kind: str, **params) -> ProfileSpec:
    return ProfileSpec(id="p", name=kind, kind=kind, risk_score=50, parameters=KINDS[kind].check_parameters(params))


def test_which_profiles_run_on_a_share_of_the_users():
    defaults = {d.kind: per_user(spec(d.kind, **d.parameters)) for d in DEFAULT_PROFILES}
    assert defaults == {
        "failed_logins": False,  # password spray counts accounts per address
        "bulk_download": True, "bulk_upload": True, "bulk_delete": True, "risky_countries": True,
        "proximity": True, "shared_credentials": True,
        "rare_event": False,  # share of the organisation that used the entity
        "data_exfiltration": False,  # novelty among peers
        "custom_threshold": True,  # grouped by user
    }
    assert per_user(spec("failed_logins", spray_users=0))
    assert not per_user(spec("custom_threshold", group_by="source_ip"))
    # Even novel to the user alone: the finding weighs the application's share of the organisation.
    assert not per_user(spec("data_exfiltration", novelty_scope="user"))
    assert per_user(spec("rare_event", max_org_share=1))


def test_lanes_group_buckets_by_cursor_and_merge_a_sole_owner():
    def cursors(snapshots: dict[str, str]) -> dict[str, tailing.Cursor]:
        return {c: tailing.Cursor(s, None) for c, s in snapshots.items()}

    same = {bucket_consumer(b): "5:5:" for b in range(N)} | {GLOBAL_CONSUMER: "5:5:"}
    sole = plan_lanes(FixedOwnership(N).share(), cursors(same))
    assert len(sole) == 1 and sole[0].users is None and sole[0].per_user and sole[0].global_
    assert sorted(sole[0].consumers) == sorted(same)

    # Buckets 0-2 at the global cursor, 3-5 at an older one (taken over): the global holder reads the
    # rows at its cursor once (the per-user detectors take only those of buckets 0-2), 3-5 by bucket.
    mixed = same | {bucket_consumer(b): "3:3:" for b in (3, 4, 5)}
    lanes = plan_lanes(Share(N, {b: 1 for b in range(N)}, 7), cursors(mixed))
    assert [(lane.snapshot, sorted(lane.buckets), lane.global_, lane.sifted) for lane in lanes] == [
        ("5:5:", [0, 1, 2], True, True), ("3:3:", [3, 4, 5], False, False)]
    assert lanes[0].users is None and lanes[1].users == events.BucketSet(N, frozenset({3, 4, 5}))

    # The global cursor apart: a lane of its own, with no per-user detectors.
    apart = plan_lanes(Share(N, {0: 1, 1: 1}, 7), cursors(same | {GLOBAL_CONSUMER: "4:4:"}))
    assert [(lane.snapshot, sorted(lane.buckets), lane.global_, lane.per_user) for lane in apart] == [
        ("5:5:", [0, 1], False, True), ("4:4:", [], True, False)]

    # Every bucket but no global bucket: one unfiltered lane for the per-user detectors.
    (only,) = plan_lanes(Share(N, {b: 1 for b in range(N)}, None), cursors(same))
    assert only.users is None and only.per_user and not only.global_ and GLOBAL_CONSUMER not in only.consumers


def users_by_bucket(engine, users):
    with engine.connect() as conn:
        return buckets_of(conn, "default", users, N)


def test_a_lane_delta_with_different_cursors_reads_each_row_once(fresh_database_url, engine):
    users = [f"u{i}" for i in range(24)]
    bucket = users_by_bucket(engine, users)
    first = [event(u, "logon", 10 * i) for i, u in enumerate(users)]
    insert_events(fresh_database_url, first, per_transaction=5)

    # x evaluates buckets 0 and 1 only; the others stay at the beginning.
    x = ProfileEvaluator(engine, seed_defaults=False, ownership=FixedOwnership(N, {0, 1}, False))
    drain(x)
    assert x.processed == sum(1 for e in first if bucket[e.user] in (0, 1))

    second = [event(u, "logon", 1000 + 10 * i) for i, u in enumerate(users)]
    insert_events(fresh_database_url, second, per_transaction=7)
    # y owns everything: buckets 0-1 from x's cursor, 2-5 from the beginning, in one transaction.
    y = ProfileEvaluator(engine, seed_defaults=False, ownership=FixedOwnership(N, range(N), False))
    assert y.run_once() == len(first) + len(second) - x.processed
    assert x.processed + y.processed == len(first) + len(second)
    assert drain(y) == 0
    with engine.connect() as conn:
        snapshots = {s for (s,) in conn.execute(text(
            "SELECT DISTINCT snapshot FROM profile_cursors WHERE consumer LIKE 'evaluator/b%'"))}
    assert len(snapshots) == 1  # the lanes caught up together and merged


def spray_events():
    """A password spray from one address over many accounts: the global lane's work."""
    return [event(f"sprayed{i}", "logon", 5000 + i * 5, outcome="failure", source_ip="203.0.113.9") for i in range(12)]


def all_events():
    return sorted(burst_events() + spray_events(), key=lambda e: e.ts)


def test_three_shares_and_a_takeover_raise_what_one_evaluator_raises(fresh_database_url, engine):
    setup_profiles(engine)
    add_profile(engine, "failed_logins", name="spray", count=100, interval_seconds=600, spray_users=8)
    insert_events(fresh_database_url, all_events(), per_transaction=9)
    drain(ProfileEvaluator(engine, seed_defaults=False, ownership=FixedOwnership(N), batch_events=100_000))
    expected = summary(engine)
    assert {name for name, *_ in expected} >= {"spray", "failed_logins", "bulk_download", "proximity"}
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM anomalies"))
        conn.execute(text("DELETE FROM profile_cursors"))

    shares = [FixedOwnership(N, {0, 1}, True), FixedOwnership(N, {2, 3}, False), FixedOwnership(N, {4, 5}, False)]
    # Small pages, so that c dies in the middle of bursts of its users.
    a, b, c = (ProfileEvaluator(engine, seed_defaults=False, ownership=o, batch_events=5) for o in shares)
    for _ in range(4):
        for ev in (a, b, c):
            ev.run_once()
    while c.processed < 21:  # into user1's second burst (bucket 5): a must warm it in to finish it
        c.run_once()
    # c dies; a takes its buckets (their cursors lag behind a's own) and warms their users in.
    shares[0].set({0, 1, 4, 5}, True)
    drain(a)
    drain(b)
    assert summary(engine) == expected
    # c comes back with its share; a gives it up: nothing more, nothing twice.
    shares[0].set({0, 1}, True)
    c = ProfileEvaluator(engine, seed_defaults=False, ownership=shares[2], batch_events=40)
    insert_events(fresh_database_url, [event("user0", "logon", 20_000, outcome="failure")])
    for ev in (a, b, c):
        drain(ev)
    assert summary(engine) == expected


def test_upgrade_takes_the_single_cursor_for_every_bucket(fresh_database_url, engine):
    setup_profiles(engine)
    insert_events(fresh_database_url, burst_events(), per_transaction=9)
    drain(ProfileEvaluator(engine, seed_defaults=False))
    before = summary(engine)
    with engine.begin() as conn:  # the store as the single evaluator left it
        conn.execute(text("DELETE FROM profile_cursors WHERE consumer <> 'evaluator'"))
        legacy = tailing.read_cursor(conn, GLOBAL_CONSUMER)
    ensure_cursors(engine, N, "beginning")
    with engine.connect() as conn:
        cursors = tailing.read_cursors(conn, [bucket_consumer(b) for b in range(N)] + [GLOBAL_CONSUMER])
    assert len(cursors) == N + 1 and all(c == legacy for c in cursors.values())
    upgraded = ProfileEvaluator(engine, seed_defaults=False, ownership=FixedOwnership(N, {0, 1, 2}, True))
    assert drain(upgraded) == 0
    assert summary(engine) == before


def test_a_replica_whose_buckets_were_taken_writes_nothing(fresh_database_url, engine):
    setup_profiles(engine)
    settings = LeaseSettings(buckets=N, lease_ttl_seconds=30, lease_heartbeat_seconds=10)
    paused, other = EvaluatorLeases(engine, "paused", settings), EvaluatorLeases(engine, "other", settings)
    for manager in (paused.users, paused.everyone):
        manager.ensure_pool()
        manager.beat()
    evaluator = ProfileEvaluator(engine, seed_defaults=False, ownership=paused)
    insert_events(fresh_database_url, burst_events()[:40])
    assert drain(evaluator) == 40
    insert_events(fresh_database_url, burst_events()[40:])
    with engine.begin() as conn:
        before = tailing.read_cursors(conn, [GLOBAL_CONSUMER] + [bucket_consumer(b) for b in range(N)])
        anomalies = summary(engine)
        # "paused" missed its heartbeats: its leases expired and "other" takes what it can.
        conn.execute(text("UPDATE work_leases SET expires_at = now() - interval '1 second'"))
        conn.execute(text("UPDATE work_lease_members SET expires_at = now() - interval '1 second'"))
    other.users.beat()
    other.everyone.beat()
    with pytest.raises(LeaseLost):
        evaluator.run_once()  # its last heartbeat is recent: it still believes it owns them all
    with engine.connect() as conn:
        assert tailing.read_cursors(conn, list(before)) == before
    assert summary(engine) == anomalies
    # Its next heartbeat shows the new share; "other" evaluates what it took.
    paused.users.beat()
    paused.everyone.beat()
    assert set(paused.share().buckets) | set(other.share().buckets) == set(range(N))
    assert not set(paused.share().buckets) & set(other.share().buckets)
    taker = ProfileEvaluator(engine, seed_defaults=False, ownership=other)
    drain(evaluator)
    drain(taker)
    with engine.connect() as conn:
        assert len({c.snapshot for c in tailing.read_cursors(conn, list(before)).values()}) == 1


def test_the_global_holder_reads_once_and_evaluates_only_its_users_per_user(fresh_database_url, engine):
    setup_profiles(engine)
    add_profile(engine, "failed_logins", name="spray", count=100, interval_seconds=600, spray_users=8)
    insert_events(fresh_database_url, all_events(), per_transaction=9)
    drain(ProfileEvaluator(engine, seed_defaults=False, ownership=FixedOwnership(N)))
    expected = summary(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM anomalies"))
        conn.execute(text("DELETE FROM profile_cursors"))
    mine = {0, 1, 2, 3}
    holder = ProfileEvaluator(engine, seed_defaults=False, ownership=FixedOwnership(N, mine, True))
    drain(holder)
    assert holder.processed == len(all_events())  # one read: the global lane and buckets 0-3 together
    bucket = users_by_bucket(engine, {user for _, user, _, _ in expected})
    assert summary(engine) == [a for a in expected if a[0] == "spray" or bucket[a[1]] in mine]
    assert any(a[0] != "spray" and bucket[a[1]] not in mine for a in expected)  # some were not its own


def test_profiles_outside_the_share_or_broken_are_not_loaded_every_poll(fresh_database_url, engine, caplog, monkeypatch):
    setup_profiles(engine)  # per-user profiles only
    broken = add_profile(engine, "bulk_upload", file_count=10, bytes=0, interval_seconds=600)
    with engine.begin() as conn:  # stored before a rule tightened
        conn.execute(text("UPDATE profiles SET parameters = '{\"file_count\": 0, \"bytes\": 0}' WHERE id = :id"),
                     {"id": broken})
    add_profile(engine, "failed_logins", name="spray", count=100, interval_seconds=600, spray_users=8)
    evaluator = ProfileEvaluator(engine, seed_defaults=False, ownership=FixedOwnership(N, {0, 1}, False))
    loaded = []
    real = definitions.load_profiles

    def load(conn, ids):
        loaded.append(sorted(ids))
        return real(conn, ids)

    monkeypatch.setattr(definitions, "load_profiles", load)
    for i in range(5):
        insert_events(fresh_database_url, [event(f"u{i}", "logon", i)])
        evaluator.run_once()
    assert [ids for ids in loaded if ids] == [loaded[0]] and len(loaded[0]) == 5  # once: 3 built, spray, broken
    assert sum("profile skipped" in r.getMessage() for r in caplog.records) == 1
