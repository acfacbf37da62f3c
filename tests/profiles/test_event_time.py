"""Windows per group in event time: a group's windows follow its own events, whatever the
times of other groups or tenants (issue 16, item 4).

Each reproduction runs the same events twice, alone and mixed with traffic at other times,
or uninterrupted and killed mid-way, and expects the same anomalies.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest

from services.profiles.evaluator import ProfileEvaluator
from services.profiles.kinds import KINDS
from services.profiles.windows import BurstWindows, Entry
from tests.profiles.dbutil import add_profile, connect, insert_events, stored_anomalies
from tests.profiles.factory import detector, event
from tests.profiles.test_evaluator import drain
from ueba.launcher import start_service
from ueba.store.schema import anomalies, profile_cursors

BRUTE_FORCE = {"count": 5, "interval_seconds": 300, "spray_users": 0}
LATE = timedelta(hours=3)


def brute_forces(users: int, at: timedelta, prefix: str = "victim", attempts: int = 5) -> list:
    """`users` accounts failing `attempts` times each, 20 s apart, all at once (so a user's
    attempts are spread among the others' in commit order)."""
    return [event(f"{prefix}{u}", "logon", at + timedelta(seconds=20 * i + u * 0.1), outcome="failure")
            for i in range(attempts) for u in range(users)]


def live_traffic(n: int, at: timedelta) -> list:
    """Failed logons of 400 other users, each at most twice in five minutes: none is a burst."""
    return [event(f"live{i % 400}", "logon", at + timedelta(seconds=0.5 * i), outcome="failure") for i in range(n)]


def interleaved(backfill: list, live: list, transactions: int) -> list[list]:
    """Both streams cut into `transactions` commits, each holding a slice of each."""
    def slices(xs):
        step = -(-len(xs) // transactions)
        return [xs[i * step : (i + 1) * step] for i in range(transactions)]

    return [b + lv for b, lv in zip(slices(backfill), slices(live))]


def run_evaluator(url: str, engine, commits: list[list], tenant: str = "default") -> int:
    add_profile(engine, "failed_logins", tenant=tenant, **BRUTE_FORCE)
    for batch in commits:
        insert_events(url, batch, tenant=tenant)
    drain(ProfileEvaluator(engine, batch_events=500, seed_defaults=False))
    return len(stored_anomalies(engine, tenant))


def test_a_brute_force_backfilled_three_hours_late_beside_live_traffic_raises_every_anomaly(
    fresh_database_url, fresh_engine
):
    backfill = brute_forces(20, timedelta(0))
    # The same backfill with the tenant's live traffic, three hours on, in the same commits.
    commits = interleaved(backfill, live_traffic(6000, LATE), transactions=50)
    assert run_evaluator(fresh_database_url, fresh_engine, commits, tenant="mixed") == 20
    assert run_evaluator(fresh_database_url, fresh_engine, [backfill], tenant="alone") == 20


def test_a_group_far_behind_the_others_fires_in_the_detector():
    d = detector("failed_logins", **BRUTE_FORCE)
    fired = []
    for batch in interleaved(brute_forces(20, timedelta(0)), live_traffic(6000, LATE), transactions=50):
        batch.sort(key=lambda e: e.ts)  # as the evaluator orders a batch
        fired += d.process(batch)
    assert sorted(f.user for f in fired) == sorted(f"victim{u}" for u in range(20))


def test_late_and_out_of_order_entries_are_judged_in_their_groups_own_time():
    ordered = brute_forces(20, timedelta(0), attempts=7)
    shuffled = list(ordered)
    random.Random(5).shuffle(shuffled)  # every attempt within one window of its user's others
    d_ordered, d_shuffled = detector("failed_logins", **BRUTE_FORCE), detector("failed_logins", **BRUTE_FORCE)
    in_order = [f.user for e in ordered for f in d_ordered.process([e])]
    out_of_order = [f.user for e in shuffled for f in d_shuffled.process([e])]
    assert len(in_order) == 20 and sorted(in_order) == sorted(out_of_order)
    # Far later events of one user do not stop another's late burst from being judged.
    d = detector("failed_logins", **BRUTE_FORCE)
    d.process(live_traffic(5000, LATE))
    assert [f.user for f in d.process(brute_forces(1, timedelta(0), prefix="late"))] == ["late0"]
    # But within one group, an entry more than interval + lateness behind its newest is dropped.
    assert d.process(brute_forces(1, LATE - timedelta(hours=1), prefix="live")) == []


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_groups_are_forgotten_after_wall_clock_idleness_or_beyond_the_cap():
    clock = FakeClock()
    w = BurstWindows(60, clock=clock, max_groups=10_000)
    for i in range(3000):  # groups at times three hours apart: each kept while fed
        w.add(f"g{i}", Entry((i % 2) * 10_800.0 + i * 0.01), None)
    assert len(w) == 3000
    clock.now += w.idle_seconds + 1
    for i in range(2048):  # two sweeps: the idle groups go, the ones just fed stay
        w.add("busy", Entry(20_000.0 + i * 0.001), None)
    assert len(w) == 1

    capped = BurstWindows(60, clock=clock, max_groups=1000)
    for i in range(50_000):
        capped.add(f"u{i}", Entry(float(i)), None)
    assert len(capped) <= 1000 + 1024
    assert capped.retained() <= len(capped)


# --- several tenants, SIGKILL mid-batch ---------------------------------------------------------

TENANT_LAG = {"east": timedelta(0), "north": timedelta(hours=1, minutes=30), "west": LATE}
ROUNDS, USERS, ATTEMPTS = 5, 40, 10


def tenant_stream(lag: timedelta) -> list:
    """Rounds of USERS brute forces at once, ten minutes apart, `lag` behind the others' clock;
    each burst spans 180 s of ATTEMPTS attempts (count 5: one anomaly per burst)."""
    start = timedelta(hours=4) - lag
    return [e for r in range(ROUNDS) for e in brute_forces(USERS, start + timedelta(minutes=10 * r), f"r{r}u", ATTEMPTS)]


def behind(url: str) -> int:
    """Events some evaluator cursor has not taken yet (all of them before there are cursors)."""
    with connect(url) as conn:
        cursors = conn.execute("SELECT count(*) FROM profile_cursors WHERE tenant = '*'").fetchone()[0]
        if not cursors:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]
        return conn.execute("""SELECT count(*) FROM events e WHERE EXISTS (
            SELECT 1 FROM profile_cursors c WHERE c.tenant = '*'
               AND NOT pg_visible_in_snapshot(e.txid, c.snapshot::pg_snapshot))""").fetchone()[0]


def anomaly_keys(engine) -> list[tuple]:
    return sorted((a.tenant, a.dedup_key) for a in stored_anomalies(engine))


def uninterrupted_run(engine, batch_events: int) -> list[tuple]:
    """The anomalies one evaluator, never stopped, raises over the stored events."""
    with engine.begin() as conn:
        conn.execute(anomalies.delete())
        conn.execute(profile_cursors.delete())
    drain(ProfileEvaluator(engine, batch_events=batch_events, seed_defaults=False), limit=10_000)
    return anomaly_keys(engine)


@pytest.mark.e2e
def test_tenants_at_different_times_killed_mid_batch_raise_what_one_uninterrupted_run_raises(
    fresh_database_url, fresh_engine, tmp_path
):
    url = fresh_database_url
    streams = {t: tenant_stream(lag) for t, lag in TENANT_LAG.items()}
    for tenant in streams:
        add_profile(fresh_engine, "failed_logins", tenant=tenant, **BRUTE_FORCE)
    total = sum(len(s) for s in streams.values())
    for i in range(0, len(streams["east"]), 100):  # the tenants' commits interleaved
        for tenant, stream in streams.items():
            insert_events(url, stream[i : i + 100], tenant=tenant)
    env = {"DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
           "UEBA_PROFILES_SEED_DEFAULTS": "false", "UEBA_PROFILES_BATCH_EVENTS": "60",
           "UEBA_PROFILES_POLL_SECONDS": "0.1", "UEBA_LEASE_TTL_SECONDS": "2", "UEBA_LEASE_HEARTBEAT_SECONDS": "0.5"}
    log = tmp_path / "profiles.log"
    first = start_service("profiles", env, log_path=log)
    try:
        deadline = time.monotonic() + 60
        while not total // 4 < total - behind(url) < total // 2:
            assert time.monotonic() < deadline, "the evaluator made no progress within a minute"
            time.sleep(0.005)
    finally:
        first.kill()
    behind_at_kill = behind(url)
    second = start_service("profiles", env, log_path=log)
    try:
        # A batch's anomalies commit with its cursor: once nothing is behind, all are stored.
        deadline = time.monotonic() + 120
        while behind(url):
            assert time.monotonic() < deadline, "the restarted evaluator did not catch up"
            time.sleep(0.2)
    finally:
        assert second.stop() == 0
    got = anomaly_keys(fresh_engine)
    assert 0 < behind_at_kill < total, "the kill did not land mid-way"

    expected = uninterrupted_run(fresh_engine, batch_events=60)
    assert len(expected) == len(TENANT_LAG) * ROUNDS * USERS
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    assert (len(got), len(missing), len(extra)) == (len(expected), 0, 0), (missing[:3], extra[:3])


# --- warm-up rebuilds the windows the live detector had ------------------------------------------

def bursty_downloads(seed: int, n: int = 600) -> list:
    """Downloads of one user with gaps from seconds to minutes: bursts that chain (one anomaly
    per interval) and bursts that fire shortly before a restart."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.choice([5, 20, 40, 120, 400])
        out.append(event("ann", "file_download", t, file_count=1, bytes=10))
    return out


def test_restarts_after_every_batch_raise_the_anomalies_of_one_uninterrupted_run(fresh_database_url, fresh_engine):
    add_profile(fresh_engine, "bulk_download", file_count=5, interval_seconds=300)
    insert_events(fresh_database_url, bursty_downloads(7), per_transaction=5)
    while ProfileEvaluator(fresh_engine, batch_events=10, seed_defaults=False).run_once():
        pass  # a new process for every batch: each warms up from the store
    restarted = anomaly_keys(fresh_engine)
    uninterrupted = uninterrupted_run(fresh_engine, batch_events=10)
    assert len(uninterrupted) > 10
    missing, extra = set(uninterrupted) - set(restarted), set(restarted) - set(uninterrupted)
    assert (len(restarted), len(missing), len(extra)) == (len(uninterrupted), 0, 0), (sorted(missing)[:3], sorted(extra)[:3])


@pytest.mark.parametrize("kind,params,make", [
    ("bulk_download", {"file_count": 5, "interval_seconds": 300},
     lambda rng, user, t: event(user, "file_download", t, file_count=1, bytes=10)),
    ("failed_logins", {"count": 5, "interval_seconds": 300, "spray_users": 3},
     lambda rng, user, t: event(user, "logon", t, outcome=rng.choice(["failure"] * 6 + ["success"]),
                                source_ip=rng.choice(["192.0.2.1", "192.0.2.2"]))),
    # Only the long window (an hour) sees three accounts from one source.
    ("failed_logins", {"count": 50, "interval_seconds": 60, "spray_users": 3, "spray_interval_seconds": 3600},
     lambda rng, user, t: event(user, "logon", t, outcome=rng.choice(["failure"] * 6 + ["success"]),
                                source_ip=rng.choice(["192.0.2.1", "192.0.2.2"]))),
])
def test_restored_fired_windows_make_a_replayed_detector_decide_like_the_live_one(kind, params, make):
    rng = random.Random(3)
    for _ in range(40):
        t, stream = 0.0, []
        for _ in range(150):
            t += rng.choice([5, 20, 40, 120, 400])
            stream.append(make(rng, rng.choice(["ann", "ben", "cat"]), t))
        live = detector(kind, **params)
        expected = sorted(f.dedup_key for f in live.process(stream))
        for kill in range(10, 150, 15):
            before = detector(kind, **params).process(stream[:kill])
            position = max(e.ts for e in stream[:kill])
            since = position - KINDS[kind].lookback_seconds(live.params)
            warmed = detector(kind, **params)
            carried = since - KINDS[kind].fired_carry_seconds(live.params)
            for f in before:  # what warm-up reads back from the stored anomalies
                if f.window_end.timestamp() > carried:
                    warmed.restore_fired(f.evidence["group"], f.window_start.timestamp(), f.window_end.timestamp())
            warmed.process([e for e in stream[:kill] if since <= e.ts])
            got = sorted([f.dedup_key for f in before] + [f.dedup_key for f in warmed.process(stream[kill:])])
            assert got == expected, (kind, kill)


def test_a_warmed_failed_logins_detector_knows_the_tenants_spray_threshold_from_the_store(fresh_database_url, fresh_engine):
    from services.profiles.warmup import warm_detector
    from tests.profiles.test_kinds import source_windows

    # 1,000 source-windows over a week, 2 % of them failing on 6 accounts: the tenant's sources
    # usually fail on fewer than 7, so a spray there needs 7.
    stream = source_windows([6 if w % 50 == 0 else 1 for w in range(1000)])
    insert_events(fresh_database_url, stream)
    live = detector("failed_logins", count=50, interval_seconds=600)
    live.process(stream)
    warmed = detector("failed_logins", count=50, interval_seconds=600)
    until = max(e.time for e in stream)
    with fresh_engine.connect() as conn:
        replayed = warm_detector(conn, warmed, until, until_inclusive=True)
    # The history came from the aggregate; only the slow spray's day is replayed, not the week.
    assert replayed == sum(1 for e in stream if e.time >= until - timedelta(days=1)) < len(stream) / 5
    assert live.spray_threshold() == warmed.spray_threshold() == 7
    assert live.slow_spray_threshold() == warmed.slow_spray_threshold() == 7
