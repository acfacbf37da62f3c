"""Three real scorer processes on one database share the users through bucket leases.

Every fire of the schedule scores every bucket exactly once (scoring_runs and the
anomaly.log lines of all replicas show each bucket, and each user-day, once per
fire); a replica killed with SIGKILL in the middle of a run has its buckets taken
over within the lease expiry and the interrupted fire completed by the others;
restarted, it gets its share again.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.scale.cluster import LeaseCluster
from tests.scorer.helpers import Activity
from ueba.launcher import ServiceProcess, start_service

BUCKETS = 12
TTL = 3.0
HEARTBEAT = 0.5
EVERY = 15  # seconds between fires
USERS = 90


def recent_activity(now: datetime) -> Activity:
    """A month of office work up to now, activity in every recent hour, and three brute forces."""
    act = Activity()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=29)
    for i in range(USERS):
        user = f"user{i:03d}"
        act.office_month(user, 28, start=start, department=f"dept{i % 6}")
        for h in range(1, 27):
            act.event(user, now - timedelta(hours=h), "logon", source_host=f"{user}-pc", destination_host="dc1")
    attack = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    for user in ("user001", "user040", "user077"):
        for k in range(25):
            act.event(user, attack + timedelta(minutes=k), "logon", outcome="failure", source_host="evil-box",
                      destination_host="dc1")
    return act


class Cluster(LeaseCluster):
    pool = "scorer"

    def __init__(self, url: str, tmp: Path):
        super().__init__(url, tmp)
        self.sinks: list[Path] = []

    def start(self, name: str) -> ServiceProcess:
        sink = self.tmp / f"{name}-{len(self.sinks)}.log"
        self.sinks.append(sink)
        proc = start_service("scorer", {
            "DATABASE_URL": self.url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
            "UEBA_SCORING_SCHEDULE": f"every {EVERY}s", "UEBA_ANOMALY_LOG": str(sink), "UEBA_BUCKETS": str(BUCKETS),
            "UEBA_LEASE_TTL_SECONDS": str(TTL), "UEBA_LEASE_HEARTBEAT_SECONDS": str(HEARTBEAT), "UEBA_DB_POOL_SIZE": "3",
        }, log_path=self.tmp / f"{name}.stderr")
        self.procs[name] = proc
        return proc

    def fire_done(self, fire: str) -> bool:
        done = self.query("SELECT count(*) FROM scorer_buckets WHERE tenant = 'default' AND scheduled_at >= %s", fire)
        return done[0][0] == BUCKETS

    def next_fire_after(self, t: datetime) -> str:
        seconds = int(t.timestamp()) // EVERY * EVERY + EVERY
        return datetime.fromtimestamp(seconds, timezone.utc).isoformat()

    def check_fire_scored_once(self, fire: str) -> list[str]:
        """Each bucket in exactly one succeeded run of the fire; each user-day in one anomaly.log line."""
        runs = self.query(
            "SELECT id::text, figures FROM scoring_runs WHERE status = 'succeeded' AND figures ->> 'fire' = %s", fire)
        buckets = Counter(b for _, f in runs for b in f["buckets"])
        assert sorted(buckets) == list(range(BUCKETS)) and set(buckets.values()) == {1}, buckets
        run_ids = {r for r, _ in runs}
        everyone = {f"user{i:03d}" for i in range(USERS)}

        def user_days() -> Counter:
            lines = [json.loads(line) for sink in self.sinks if sink.exists() for line in sink.read_text().splitlines()]
            return Counter((x["user"], x["day"]) for x in lines if x["type"] == "user_score" and x["run_id"] in run_ids)

        # A replica writes its lines just after its commit: give the last one a moment.
        self.wait("every user's lines", lambda: {u for u, _ in user_days()} == everyone, timeout=10)
        days = user_days()
        assert set(days.values()) == {1}, [k for k, v in days.items() if v > 1][:5]
        return sorted({f["owner"] for _, f in runs if f["buckets"]})

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop(signal.SIGTERM, timeout=20)


@pytest.fixture
def cluster(migrated_databases, tmp_path):
    name, url = migrated_databases.new("ueba_scale")
    recent_activity(datetime.now(timezone.utc)).write(url)
    c = Cluster(url, tmp_path)
    yield c
    c.stop()
    migrated_databases.drop(name)


def test_three_replicas_score_each_bucket_once_and_survive_sigkill(cluster):
    for name in ("a", "b", "c"):
        cluster.start(name)
    share = -(-BUCKETS // 3)
    cluster.wait("an even split", lambda: sorted(cluster.holdings().values()) == [share] * 3, timeout=30)
    owners = {name: cluster.owner(name) for name in ("a", "b", "c")}

    # A fire after the split: three replicas, each bucket once.
    fire1 = cluster.next_fire_after(datetime.now(timezone.utc))
    cluster.wait(f"fire {fire1}", lambda: cluster.fire_done(fire1), timeout=EVERY + 60)
    assert cluster.check_fire_scored_once(fire1) == sorted(owners.values())

    # Kill b in the middle of one of its runs.
    running = cluster.wait("a run of b", lambda: cluster.query(
        "SELECT figures ->> 'fire' FROM scoring_runs WHERE status = 'running' AND figures ->> 'owner' = %s",
        owners["b"]), timeout=3 * EVERY + 60, step=0.01)
    cluster.procs["b"].kill()
    killed_at = time.monotonic()
    fire2 = running[0][0]
    cluster.wait("b's buckets taken over", lambda: owners["b"] not in cluster.holdings()
                 and sum(cluster.holdings().values()) == BUCKETS, timeout=TTL + 10, step=0.05)
    taken_over = time.monotonic() - killed_at
    assert taken_over <= TTL + 2 * HEARTBEAT + 1.0, taken_over  # expiry, the next heartbeat, one slow beat

    # The interrupted fire is completed by the survivors, each bucket once, and b's run is marked failed.
    cluster.wait(f"fire {fire2}", lambda: cluster.fire_done(fire2), timeout=EVERY + 60)
    assert owners["b"] not in cluster.check_fire_scored_once(fire2)
    cluster.wait("b's run marked failed", lambda: cluster.query(
        "SELECT 1 FROM scoring_runs WHERE figures ->> 'owner' = %s AND status = 'failed' AND error LIKE 'interrupted%%'",
        owners["b"]), timeout=30)
    assert not cluster.query("SELECT 1 FROM scoring_runs WHERE figures ->> 'owner' = %s AND status = 'running'",
                             owners["b"])

    # b comes back as a new member and gets its share again.
    cluster.start("b")
    owners["b"] = cluster.owner("b")
    cluster.wait("b's share back", lambda: cluster.holdings().get(owners["b"]) == share
                 and sorted(cluster.holdings().values()) == [share] * 3, timeout=30)
    fire3 = cluster.next_fire_after(datetime.now(timezone.utc))
    cluster.wait(f"fire {fire3}", lambda: cluster.fire_done(fire3), timeout=EVERY + 60)
    assert cluster.check_fire_scored_once(fire3) == sorted(owners.values())

    # Nothing duplicated or missing in the stored results either.
    assert not cluster.query("SELECT tenant, dedup_key FROM anomalies GROUP BY 1, 2 HAVING count(*) > 1")
    attacked = {u for (u,) in cluster.query("SELECT DISTINCT user_name FROM anomalies WHERE source = 'model'")}
    assert {"user001", "user040", "user077"} <= attacked
    window_users = cluster.query(
        "SELECT count(DISTINCT user_name) FROM event_scores WHERE hour >= now() - interval '20 hours'")
    assert window_users[0][0] == USERS
