"""Three real profiles processes on one database share the users through bucket leases.

A simulated organisation with labelled attacks streams through ingest; one replica (the
one holding the global bucket) is killed with SIGKILL in the middle of the stream and its
buckets are taken over within the lease expiry; restarted, it gets its share again. In
the end the anomalies are exactly those one evaluator raises over the same events: none
missing, none twice.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from services.profiles.buckets import FixedOwnership
from services.profiles.evaluator import ProfileEvaluator
from tests.profiles.test_evaluator import drain
from tests.profiles.test_simulated import EXPECTED_KIND
from tests.scale.cluster import LeaseCluster
from ueba.client.ingest import IngestClient
from ueba.db import create_db_engine
from ueba.launcher import ServiceProcess, start_service
from ueba.simulator import SimulationConfig, simulate

pytestmark = pytest.mark.e2e

BUCKETS = 12
TTL = 3.0
HEARTBEAT = 0.5
USERS, DAYS = 60, 10


class Cluster(LeaseCluster):
    pool = "profiles"

    def __init__(self, url: str, tmp: Path):
        super().__init__(url, tmp)
        self.env = {"DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1"}
        self.ingest = start_service("ingest", self.env, log_path=tmp / "ingest.stderr")

    def start(self, name: str) -> ServiceProcess:
        self.procs[name] = start_service("profiles", {
            **self.env, "UEBA_BUCKETS": str(BUCKETS), "UEBA_LEASE_TTL_SECONDS": str(TTL),
            "UEBA_LEASE_HEARTBEAT_SECONDS": str(HEARTBEAT), "UEBA_PROFILES_POLL_SECONDS": "0.2",
            "UEBA_PROFILES_BATCH_EVENTS": "1000", "UEBA_DB_POOL_SIZE": "4",
        }, log_path=self.tmp / f"profiles-{name}-{len(self.procs)}.stderr")
        return self.procs[name]

    def send(self, events) -> None:
        # One batch in flight: events commit in time order, as one evaluator and many see them.
        with IngestClient(self.ingest.address, batch_size=500, window=1) as client:
            totals = client.send(events)
        assert totals.rejected == 0, totals.rejections[:3]

    def caught_up(self) -> bool:
        """Every bucket cursor and the global one see every stored event."""
        behind = self.query("""SELECT count(*) FROM profile_cursors c
                               WHERE c.consumer = 'evaluator' OR c.consumer LIKE 'evaluator/b%%'""")
        if behind[0][0] != BUCKETS + 1:
            return False
        lagging = self.query("""SELECT count(*) FROM profile_cursors c, LATERAL (
                                    SELECT 1 FROM events e
                                    WHERE NOT pg_visible_in_snapshot(e.txid, c.snapshot::pg_snapshot) LIMIT 1) x
                                WHERE c.consumer = 'evaluator' OR c.consumer LIKE 'evaluator/b%%'""")
        return lagging[0][0] == 0

    def anomalies(self) -> list[tuple]:
        return sorted(self.query("SELECT dedup_key, profile_kind, user_name FROM anomalies"))

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop(signal.SIGTERM, timeout=20)
        self.ingest.stop()


@pytest.fixture
def cluster(migrated_databases, tmp_path):
    name, url = migrated_databases.new("ueba_scale_p")
    c = Cluster(url, tmp_path)
    yield c
    c.stop()
    migrated_databases.drop(name)


def test_three_replicas_raise_each_anomaly_once_and_survive_sigkill(cluster):
    sim = simulate(SimulationConfig(users=USERS, days=DAYS, seed=11, scenarios=True,
                                    scenario_counts={kind: 1 for kind in EXPECTED_KIND}))
    events = list(sim.events())
    for name in ("a", "b", "c"):
        cluster.start(name)
    share = -(-BUCKETS // 3)
    cluster.wait("an even split", lambda: sorted(cluster.holdings().values()) == [share] * 3, timeout=30)
    owners = {name: cluster.owner(name) for name in ("a", "b", "c")}
    (global_owner,) = cluster.holdings("profiles-global")
    victim = next(name for name, owner in owners.items() if owner == global_owner)

    half = len(events) // 2
    cluster.send(events[:half])
    # Kill the holder of the global bucket while it works through the first half.
    cluster.procs[victim].kill()
    killed_at = time.monotonic()
    survivors = {o for n, o in owners.items() if n != victim}
    cluster.wait("the victim's buckets taken over",
         lambda: set(cluster.holdings()) == survivors and sum(cluster.holdings().values()) == BUCKETS
         and set(cluster.holdings("profiles-global")) <= survivors and cluster.holdings("profiles-global"),
         timeout=TTL + 10, step=0.05)
    taken_over = time.monotonic() - killed_at
    assert taken_over <= TTL + 2 * HEARTBEAT + 1.0, taken_over  # expiry, the next heartbeat, one slow beat

    cluster.send(events[half:])
    cluster.start(victim)
    owners[victim] = cluster.owner(victim)
    cluster.wait("the victim's share back", lambda: cluster.holdings().get(owners[victim]) == share
         and sorted(cluster.holdings().values()) == [share] * 3, timeout=30)
    cluster.wait("every cursor caught up", cluster.caught_up, timeout=300, step=0.5)
    found = cluster.anomalies()
    kinds = Counter(kind for _, kind, _ in found)
    assert {"failed_logins", "bulk_download", "proximity", "rare_event"} <= set(kinds), kinds

    # One evaluator over the same events raises the same anomalies.
    cluster.stop()
    engine = create_db_engine(cluster.url, pool_size=2)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM anomalies")
            conn.exec_driver_sql("DELETE FROM profile_cursors")
        drain(ProfileEvaluator(engine, ownership=FixedOwnership(BUCKETS)), limit=10_000)
    finally:
        engine.dispose()
    reference = cluster.anomalies()
    missing = sorted(set(reference) - set(found))
    extra = sorted(set(found) - set(reference))
    assert not missing and not extra, (missing[:5], extra[:5])
    assert len(found) == len(reference)
