"""Replica scaling: scorer users scored per second with one and with two replicas on this machine.

Each replica is its own process with its own LeaseManager (pool `scorer`); the
leases settle to an even split before the clock starts, then every replica runs
its scheduled share of one fire at once (a barrier), and the wall time to the
last commit is measured. user_hour_features are synthesised as in bench_scorer
(aggregation is incremental in production; here it finds nothing new, so the
figures are the scoring's). A warm-up run first, so every measured run replaces
existing scores (delete + insert) the way a scheduled run does.

Beside the throughput, the figures a capacity model needs: per stage, the part
every replica repeats (reading the other buckets' baselines, which peer groups and
shrinkage need, from the replicas that loaded them) and the part split by buckets
(baseline load, scoring, writes), peak memory per replica, rows and bytes written
per user-day, and the machine's load.

The profiles evaluator's events/s with one and two replicas: bench/scale_evaluator.py.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from datetime import timedelta
from pathlib import Path

import psycopg

from bench.bench_scorer import DAY, synthesise
from bench.scale_evaluator import evaluator_replicas
from bench import DATA
from ueba.store.databases import postgres_server, scratch_database
from ueba.db import libpq_url

USERS = 2_000
BUCKETS = 64
WINDOW = (DAY, DAY + timedelta(days=1))


def _replica(url: str, owner: str, replicas: int, fire_offset: int, go, ready, results) -> None:
    from services.scorer.runs import ScheduledBuckets, Scorer
    from services.scorer.settings import ScorerSettings
    from ueba.anomaly_log import AnomalySink
    from ueba.db import create_db_engine
    from ueba.leases import LeaseManager

    engine = create_db_engine(url, pool_size=3)
    settings = ScorerSettings.from_env({"DATABASE_URL": url, "UEBA_BUCKETS": str(BUCKETS)})
    scorer = Scorer(engine, settings, AnomalySink("off"))
    # Beats by hand: a long ttl keeps the split still during the run.
    leases = LeaseManager(engine, "scorer", owner, BUCKETS, ttl=600, heartbeat=300)
    leases.ensure_pool()
    share = math.ceil(BUCKETS / replicas)
    deadline = time.monotonic() + 60
    while len(held := leases.beat()) != share and time.monotonic() < deadline:
        time.sleep(0.2)
    ready.put(len(held))
    go.wait()
    started = time.perf_counter()
    result = scorer.run("default", *WINDOW, trigger="schedule",
                        scheduled=ScheduledBuckets(WINDOW[1] + timedelta(minutes=fire_offset), held, leases))
    seconds = time.perf_counter() - started
    leases.stop()
    engine.dispose()
    results.put({"owner": owner, "status": result.status, "error": result.error, "seconds": round(seconds, 2),
                 "buckets": len(held), "users_scored": result.figures.get("users_scored", 0),
                 "stage_seconds": result.figures.get("stage_seconds", {}),
                 "peak_rss_bytes": _peak_rss_bytes()})


def _peak_rss_bytes() -> int:
    """This process's peak RSS. Not ru_maxrss: a spawned child inherits the forking parent's
    through exec, so every replica would report the bench process's peak."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib * 1024


def replicas_run(url: str, replicas: int, fire_offset: int) -> dict:
    ctx = mp.get_context("spawn")
    go, ready, results = ctx.Event(), ctx.Queue(), ctx.Queue()
    children = [ctx.Process(target=_replica, args=(url, f"bench-{replicas}-{i}", replicas, fire_offset, go, ready, results))
                for i in range(replicas)]
    for child in children:
        child.start()
    held = [ready.get(timeout=120) for _ in children]
    load_before = os.getloadavg()[0]
    cpu_before = _cpu_times()
    started = time.perf_counter()
    go.set()
    runs = [results.get(timeout=1800) for _ in children]
    wall = time.perf_counter() - started
    cpu_after = _cpu_times()
    for child in children:
        child.join()
    users = sum(r["users_scored"] for r in runs)
    return {"replicas": replicas, "buckets_held": held, "wall_seconds": round(wall, 2), "users_scored": users,
            "users_per_second": round(users / wall, 1), "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2),
            "machine_cpu_busy": _busy(cpu_before, cpu_after), "runs": runs}


def _cpu_times() -> list[int] | None:
    """The machine's CPU jiffies (Linux /proc/stat), to tell a saturated machine from a slow run."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None


def _busy(before, after) -> float | None:
    """Share of all cores busy (anyone's work, not only the bench's) between two readings."""
    if not before or not after:
        return None
    delta = [a - b for a, b in zip(after, before)]
    idle = delta[3] + delta[4]  # idle + iowait
    return round(1 - idle / max(sum(delta), 1), 2)


def _written(url: str) -> dict:
    with psycopg.connect(libpq_url(url)) as conn:
        rows, user_days = conn.execute("SELECT count(*), count(DISTINCT (user_name, date_trunc('day', hour))) FROM event_scores").fetchone()
        # Partitioned: the parent itself holds nothing.
        size = conn.execute("SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('event_scores')").fetchone()[0]
    return {"event_score_rows_per_user_day": round(rows / max(user_days, 1), 1),
            "event_scores_bytes_per_user_day": round(size / max(user_days, 1))}


def run(out_dir: Path) -> dict:
    from ueba.store.migrate import upgrade

    users = int(os.environ.get("UEBA_BENCH_SCALE_USERS", USERS))
    with postgres_server(DATA / "bench") as server, scratch_database(server, "ueba_bench_scale") as url:
        upgrade(url)
        synthesise(url, users)
        warm = replicas_run(url, 1, 1)
        one = replicas_run(url, 1, 2)
        two = replicas_run(url, 2, 3)
        written = _written(url)
        evaluator = evaluator_replicas(server, out_dir)
    stages = one["runs"][0]["stage_seconds"]
    # One replica loads every baseline itself; with two, each reads the other's half.
    repeated = stages.get("features", 0) + max(r["stage_seconds"].get("share_baselines", 0) for r in two["runs"])
    split = sum(v for k, v in stages.items() if k not in ("features", "share_baselines"))
    return {
        "users": users,
        "buckets": BUCKETS,
        "cpus": os.cpu_count(),
        "warm_up": {k: warm[k] for k in ("wall_seconds", "users_per_second")},
        "one_replica": one,
        "two_replicas": two,
        "speedup": round(two["users_per_second"] / one["users_per_second"], 2),
        "capacity_model": {
            "per_replica_repeated_seconds": round(repeated, 2),
            "per_user_split_ms": round(1000 * split / users, 3),
            "note": "a run's time per replica ~ repeated (reading the other buckets' baselines, "
                    "grows with all users) + per_user_split_ms x users in its buckets (baseline load, scoring, "
                    "writes); Postgres does most of the split work, so replicas beyond the database's cores add little",
            "peak_rss_bytes_one_replica": one["runs"][0]["peak_rss_bytes"],
            "peak_rss_bytes_per_replica_of_two": max(r["peak_rss_bytes"] for r in two["runs"]),
            **written,
        },
        "evaluator": evaluator,
        "machine_note": "2 cores shared with other work; see load_average_before/after of each measurement",
    }
