"""Scorer scale: score N users x 24 hours against a 30-day baseline (1,000 and 10,000 users).

user_hour_features are synthesised directly in SQL (generate_series): producing
10,000 users' month of raw events and aggregating it would take far longer than
the scoring this measures, and aggregation is incremental in production (a run
aggregates only the hours since the previous one); their day rollup and hour vectors
are written by the scorer's own statements (day_features.rebuild, hour_vectors.rebuild). Each size runs in a fresh
child process so that its peak memory is its own.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from bench import DATA
from ueba.store.databases import postgres_server, scratch_database
from ueba.db import libpq_url

DAY = datetime(2026, 6, 1, tzinfo=timezone.utc)  # a Monday, the scored day
BASELINE_DAYS = 30
SIZES = (1_000, 10_000)
TARGET_SECONDS = 20.0  # as bench/summary.py (round 2)
TARGET_BYTES = 1024**3  # as bench/summary.py

_SYNTH = [
    # Office hours per user (8 to 10 hours, shifted by user), some weekend work, some random evenings.
    """INSERT INTO user_hour_features (tenant, user_name, hour, model, features, event_count)
    SELECT 'default', 'user' || u, h, 'login_time', jsonb_build_object('events', 2 + floor(random() * 10)), 5
    FROM generate_series(0, %(n)s - 1) u,
         generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') h
    WHERE (extract(isodow FROM h) < 6 AND extract(hour FROM h) BETWEEN 7 + u %% 4 AND 15 + u %% 4 + u %% 2)
       OR random() < 0.02""",
    """INSERT INTO user_hour_features (tenant, user_name, hour, model, features, event_count)
    SELECT tenant, user_name, hour, 'authentication',
           jsonb_build_object('successes', 1 + floor(random() * 2), 'failures', (random() < 0.05)::int, 'new_event_types', 0), 2
    FROM user_hour_features WHERE model = 'login_time' AND random() < 0.4""",
    """INSERT INTO user_hour_features (tenant, user_name, hour, model, features, event_count)
    SELECT tenant, user_name, hour, 'impacted_host',
           jsonb_build_object('distinct_hosts', 1 + floor(random() * 3), 'new_hosts', (random() < 0.01)::int,
                              'connections', 2 + floor(random() * 5), 'max_to_one_host', 1 + floor(random() * 3)), 4
    FROM user_hour_features WHERE model = 'login_time' AND random() < 0.6""",
    """INSERT INTO user_hour_features (tenant, user_name, hour, model, features, event_count)
    SELECT tenant, user_name, hour, 'origin_host',
           jsonb_build_object('distinct_origins', 1, 'new_origins', 0, 'new_source_ips', (random() < 0.02)::int,
                              'max_from_one_origin', 1 + floor(random() * 6), 'max_accounts_failing_from_origin', 0), 3
    FROM user_hour_features WHERE model = 'login_time' AND random() < 0.5""",
    """INSERT INTO user_hour_features (tenant, user_name, hour, model, features, event_count)
    SELECT tenant, user_name, hour, 'origin_location',
           jsonb_build_object('distinct_countries', 1, 'new_countries', 0, 'distinct_cities', 1, 'new_cities', 0,
                              'max_distance_km', round((random() * 20)::numeric, 1), 'max_speed_kmh', round((random() * 30)::numeric, 1)), 3
    FROM user_hour_features WHERE model = 'login_time' AND random() < 0.5""",
    """INSERT INTO user_hour_features (tenant, user_name, hour, model, features, event_count)
    SELECT tenant, user_name, hour, 'data_movement',
           jsonb_build_object('files_downloaded', floor(random() * 6), 'bytes_downloaded', floor(random() * 5e6),
                              'files_uploaded', floor(random() * 2), 'bytes_uploaded', floor(random() * 1e6),
                              'files_deleted', (random() < 0.1)::int, 'files_shared', (random() < 0.05)::int,
                              'new_applications', 0), 4
    FROM user_hour_features WHERE model = 'login_time' AND random() < 0.5""",
    """INSERT INTO users (tenant, user_name, department, first_seen, last_seen)
    SELECT 'default', 'user' || u, CASE WHEN u %% 5 = 0 THEN NULL ELSE 'dept' || (u %% 12) END, %(start)s, %(end)s
    FROM generate_series(0, %(n)s - 1) u""",
]


def synthesise(url: str, users: int) -> int:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SELECT setseed(0.42)")
        params = {"n": users, "start": DAY - timedelta(days=BASELINE_DAYS), "end": DAY + timedelta(days=1)}
        for statement in _SYNTH:
            conn.execute(statement, params)
    _roll_up_days(url)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE user_hour_features")
        conn.execute("VACUUM ANALYZE user_day_features")
        conn.execute("VACUUM ANALYZE user_hour_vectors")
        return conn.execute("SELECT count(*) FROM user_hour_features").fetchone()[0]


def _roll_up_days(url: str) -> None:
    """The day rollup and hour vectors of the synthesised hours, by the statements production's aggregation
    and migrations use."""
    from services.scorer import day_features, hour_vectors
    from ueba.db import create_db_engine

    engine = create_db_engine(url, pool_size=1)
    try:
        with engine.begin() as conn:
            day_features.rebuild(conn)
            hour_vectors.rebuild(conn)
    finally:
        engine.dispose()


def _score(url: str, sink: str, queue) -> None:
    from services.scorer.runs import Scorer
    from services.scorer.settings import ScorerSettings
    from ueba.anomaly_log import AnomalySink
    from ueba.db import create_db_engine

    engine = create_db_engine(url, pool_size=2)
    scorer = Scorer(engine, ScorerSettings.from_env({"DATABASE_URL": url}), AnomalySink(sink))
    started = time.perf_counter()
    result = scorer.run("default", DAY, DAY + timedelta(days=1))
    seconds = time.perf_counter() - started
    queue.put({"status": result.status, "error": result.error, "seconds": round(seconds, 2),
               "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               **{k: v for k, v in result.figures.items() if k != "snapshot"}})


def measure(server: str, users: int, out_dir: Path) -> dict:
    from ueba.store.migrate import upgrade

    with scratch_database(server, f"ueba_bench_scorer_{users}") as url:
        upgrade(url)
        t = time.perf_counter()
        rows = synthesise(url, users)
        setup = time.perf_counter() - t
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_score, args=(url, str(out_dir / f"scorer-anomaly-{users}.log"), queue))
        child.start()
        result = queue.get()
        child.join()
        (out_dir / f"scorer-anomaly-{users}.log").unlink(missing_ok=True)
        return {"users": users, "feature_rows": rows, "setup_seconds": round(setup, 1), **result}


def run(out_dir: Path) -> dict:
    sizes = [int(s) for s in os.environ.get("UEBA_BENCH_SCORER_SIZES", ",".join(map(str, SIZES))).split(",")]
    with postgres_server(DATA / "bench") as server:
        results = [measure(server, n, out_dir) for n in sizes]
    largest = results[-1]
    per_user = [r["seconds"] / r["users"] for r in results]
    out = {
        "runs": results,
        "seconds_per_1000_users": [round(1000 * p, 2) for p in per_user],
        "scaling_ratio": round(per_user[-1] / per_user[0], 2) if len(per_user) > 1 else None,
        "targets": {"seconds_10000_users": f"< {TARGET_SECONDS}", "peak_rss_bytes": f"< {TARGET_BYTES}",
                    "scaling": "close to linear (ratio of seconds per user near 1)"},
        "note": "user_hour_features synthesised in SQL; timing covers one RunScoring-equivalent run "
                "(baselines, models, event and user scores, anomalies, anomaly.log to a file)",
    }
    out["targets_met"] = bool(
        all(r["status"] == "succeeded" for r in results)
        and largest["users"] >= 10_000 and largest["seconds"] < TARGET_SECONDS and largest["peak_rss_bytes"] < TARGET_BYTES
    )
    return out
