"""Query service latency under 50 concurrent clients on a realistic store.

Store: 1,000 users, 5 million events over 30 days, 100,000 anomalies (rule and
model, 80% still new), 30 days of daily user scores and 3 days of hourly event
scores for every user and model, generated directly in SQL (generate_series),
not through ingest. The query service runs as its own process
(`python -m services.query`); 50 client threads in two client processes call it
over loopback in a closed loop (each sends its next call as soon as the last
answers), one method at a time, with varied arguments, then again paced: each
client sends one call every 1/BENCH_QUERY_RATE seconds (default 2 calls/s per
client, 100 calls/s in all), as dashboards and playbooks do. Reported: p50/p99
per method for both. The closed loop measures saturation: its latency is the
queue of 50 clients (50 / throughput), so it mostly reflects the machine's
cores. Target: p99 under 50 ms for GetSummary, ListAnomalies, GetUser and
GetUserTimeline under the paced load.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import statistics
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from ueba.bootstrap import resolve_database_url
from ueba.db import libpq_url, with_database
from ueba.launcher import start_service
from ueba.settings import BaseSettings
from ueba.store.migrate import upgrade
from ueba.store.partitions import ensure_partitions

USERS = 1000
EVENTS = 5_000_000
ANOMALIES = 100_000
DAYS = 30
SCORED_DAYS = 3
CLIENTS = 50
CLIENT_PROCESSES = 2
SECONDS_PER_METHOD = float(os.environ.get("BENCH_QUERY_SECONDS", "15"))
RATE_PER_CLIENT = float(os.environ.get("BENCH_QUERY_RATE", "2"))
TARGET_P99_MS = 50.0
METHODS = ("GetSummary", "ListAnomalies", "GetUser", "GetUserTimeline")

KINDS = [
    ("failed_logins", "authentication", "rule"), ("bulk_download", "data", "rule"), ("bulk_upload", "data", "rule"),
    ("bulk_delete", "data", "rule"), ("risky_countries", "location", "rule"), ("proximity", "location", "rule"),
    ("rare_event", "application", "rule"), ("shared_credentials", "authentication", "rule"),
    ("data_exfiltration", "data", "rule"), ("custom_threshold", "authentication", "rule"),
    ("authentication", "authentication", "model"), ("impacted_host", "host", "model"), ("login_time", "time", "model"),
    ("origin_host", "host", "model"), ("origin_location", "location", "model"), ("data_movement", "data", "model"),
    ("peer_group", "peer", "model"),
]
MODELS = [k for k, _d, s in KINDS if s == "model"]


def _array(values: list[str]) -> str:
    return "ARRAY[" + ",".join(f"'{v}'" for v in values) + "]"  # fixed names, no input


def generate(url: str, end: datetime) -> dict:
    start = end - timedelta(days=DAYS)
    timings = {}
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        ensure_partitions(conn, {(start + timedelta(days=i)).date() for i in range(DAYS + 1)})
        params = {"start": start, "end": end, "span": (end - start).total_seconds()}
        t = time.time()
        conn.execute(
            """INSERT INTO users (tenant, user_name, department, first_seen, last_seen)
               SELECT 'default', 'user' || lpad(g::text, 4, '0'), 'dept' || (g %% 12), %(start)s - interval '30 days', %(end)s
               FROM generate_series(0, %(n)s - 1) g""", {**params, "n": USERS})
        chunk = 500_000
        for offset in range(0, EVENTS, chunk):
            conn.execute(
                """INSERT INTO events (tenant, event_id, time, user_name, event_type, outcome, source_host, bytes)
                   SELECT 'default', 'ev' || g, %(start)s + (g::float8 / %(n)s * %(span)s) * interval '1 second',
                          'user' || lpad(((hashint4(g)::bigint & 2147483647) %% %(users)s)::text, 4, '0'),
                          (ARRAY['logon','logoff','file_download','app_access','host_access'])[1 + g %% 5],
                          CASE WHEN g %% 17 = 0 THEN 'failure' ELSE 'success' END, 'host' || (g %% 300), g %% 100000
                   FROM generate_series(%(lo)s, %(hi)s) g""",
                {**params, "n": EVENTS, "users": USERS, "lo": offset, "hi": min(offset + chunk, EVENTS) - 1})
        timings["events_seconds"] = round(time.time() - t, 1)
        t = time.time()
        conn.execute(
            f"""INSERT INTO anomalies (tenant, user_name, source, profile_id, profile_name, profile_kind, risk_score,
                    description, dimension, time, window_start, window_end, status, evidence, dedup_key)
               SELECT 'default', 'user' || lpad(((hashint4(g + 7)::bigint & 2147483647) %% %(users)s)::text, 4, '0'),
                      k.source, k.kind, replace(k.kind, '_', ' '), k.kind, 1 + (power(random(), 2) * 99)::int,
                      k.kind || ' anomaly ' || g || CASE WHEN g %% 10 = 0 THEN ' from a new country' ELSE '' END,
                      k.dimension, ts, ts - interval '1 hour', ts,
                      CASE WHEN g %% 5 = 0 THEN (ARRAY['acknowledged','resolved','false_positive'])[1 + g %% 3] ELSE 'new' END,
                      jsonb_build_object('event_ids', jsonb_build_array('ev' || g), 'count', g %% 50), 'bench' || g
               FROM generate_series(0, %(n)s - 1) g
               CROSS JOIN LATERAL (SELECT %(start)s + (g::float8 / %(n)s * %(span)s) * interval '1 second' AS ts) t
               CROSS JOIN LATERAL (SELECT ({_array([k for k, _, _ in KINDS])})[1 + g %% {len(KINDS)}] AS kind,
                                          ({_array([d for _, d, _ in KINDS])})[1 + g %% {len(KINDS)}] AS dimension,
                                          ({_array([s for _, _, s in KINDS])})[1 + g %% {len(KINDS)}] AS source) k""",
            {**params, "n": ANOMALIES, "users": USERS})
        timings["anomalies_seconds"] = round(time.time() - t, 1)
        t = time.time()
        conn.execute(
            """INSERT INTO user_scores (tenant, user_name, day, score, scored_hours, learning, run_id)
               SELECT 'default', 'user' || lpad(u::text, 4, '0'), (%(end)s::date - d), random() * 60, 14, false, gen_random_uuid()
               FROM generate_series(0, %(users)s - 1) u, generate_series(1, %(days)s) d""",
            {**params, "users": USERS, "days": DAYS})
        conn.execute(
            f"""INSERT INTO event_scores (tenant, user_name, hour, model, score, features, learning, run_id)
               SELECT 'default', 'user' || lpad(u::text, 4, '0'), date_trunc('day', %(end)s::timestamptz) - h * interval '1 hour',
                      m, 1 + (power(random(), 3) * 99)::int,
                      jsonb_build_array(jsonb_build_object('name', 'count', 'expected', 2.5, 'observed', 7, 'share', 0.7),
                                        jsonb_build_object('name', 'novelty', 'expected', 0.1, 'observed', 1, 'share', 0.3)),
                      false, gen_random_uuid()
               FROM generate_series(0, %(users)s - 1) u, generate_series(1, %(hours)s) h, unnest({_array(MODELS)}) m""",
            {**params, "users": USERS, "hours": SCORED_DAYS * 24})
        timings["scores_seconds"] = round(time.time() - t, 1)
        t = time.time()
        conn.execute("VACUUM ANALYZE")
        timings["vacuum_seconds"] = round(time.time() - t, 1)
    return timings


def _client_process(address: str, method: str, threads: int, seconds: float, seed: int, end_iso: str, queue, rate: float = 0.0) -> None:
    import grpc

    from ueba.v1 import query_pb2, query_pb2_grpc

    end = datetime.fromisoformat(end_iso)
    day0 = end.replace(hour=0, minute=0, second=0, microsecond=0)
    filters = ["", "risk>=high", "status:new", '"new country"', "source:model risk>=medium"]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(n: int) -> None:
        rnd = random.Random(seed * 1000 + n)
        channel = grpc.insecure_channel(address)
        stub = query_pb2_grpc.QueryServiceStub(channel)
        mine = []
        next_at = time.monotonic() + rnd.random() / rate if rate else 0.0
        while time.monotonic() < deadline:
            if rate:  # paced: wait for this client's next slot
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += 1.0 / rate
            user = f"user{rnd.randrange(USERS):04d}"
            if method == "GetSummary":
                req = query_pb2.GetSummaryRequest()
                req.range.start.FromDatetime(datetime.now(timezone.utc) - timedelta(days=rnd.choice([1, 7, 30])))
                call = lambda: stub.GetSummary(req, timeout=30)
            elif method == "ListAnomalies":
                q = rnd.choice(filters + [f"user:{user}"])
                order = rnd.choice(["time desc", "risk desc"])
                call = lambda: stub.ListAnomalies(query_pb2.ListAnomaliesRequest(
                    filter=query_pb2.AnomalyFilter(query=q), page_size=50, order_by=order), timeout=30)
            elif method == "GetUser":
                call = lambda: stub.GetUser(query_pb2.GetUserRequest(user=user), timeout=30)
            else:
                req = query_pb2.GetUserTimelineRequest(user=user)
                req.day.FromDatetime(day0 - timedelta(days=rnd.randrange(1, SCORED_DAYS + 1)))
                call = lambda: stub.GetUserTimeline(req, timeout=30)
            started = time.perf_counter()
            try:
                call()
            except grpc.RpcError:
                with lock:
                    errors[0] += 1
                continue
            mine.append(time.perf_counter() - started)
        channel.close()
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    queue.put((latencies, errors[0]))


def measure(address: str, method: str, seconds: float, end: datetime, rate: float = 0.0) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    per = CLIENTS // CLIENT_PROCESSES
    procs = [ctx.Process(target=_client_process, args=(address, method, per, seconds, i, end.isoformat(), queue, rate))
             for i in range(CLIENT_PROCESSES)]
    for p in procs:
        p.start()
    latencies, errors = [], 0
    for _ in procs:
        lat, err = queue.get()
        latencies.extend(lat)
        errors += err
    for p in procs:
        p.join()
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [0.0] * 99
    return {"calls": len(ms), "errors": errors, "per_second": round(len(ms) / seconds, 1),
            "p50_ms": round(q[49], 2), "p99_ms": round(q[98], 2), "max_ms": round(ms[-1], 2) if ms else 0.0}


def run(out_dir: Path) -> dict:
    settings = BaseSettings.from_env()
    server_url = resolve_database_url(settings)
    # BENCH_QUERY_DATABASE keeps the generated store between runs (made once, never dropped).
    kept = os.environ.get("BENCH_QUERY_DATABASE", "")
    name = kept or f"ueba_bench_query_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    result: dict = {"users": USERS, "events": EVENTS, "anomalies": ANOMALIES, "clients": CLIENTS,
                    "client_processes": CLIENT_PROCESSES, "seconds_per_method": SECONDS_PER_METHOD}
    service = None
    try:
        upgrade(url)
        end = datetime.now(timezone.utc)
        if exists:
            with psycopg.connect(libpq_url(url)) as conn:
                end = conn.execute("SELECT max(time) FROM events").fetchone()[0] or end
        else:
            result["generate"] = generate(url, end)
        log = out_dir / "query-bench-service.log"
        service = start_service("query", {"DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
                                          "UEBA_LOG_LEVEL": "WARNING", "UEBA_DB_POOL_SIZE": "16"}, log_path=log)
        measure(service.address, "GetSummary", 2.0, end)  # warm-up: caches, the first user-risk refresh
        closed, paced = {}, {}
        for method in METHODS:
            closed[method] = measure(service.address, method, SECONDS_PER_METHOD, end)
            print(f"  closed loop {method}: {closed[method]}", flush=True)
        for method in METHODS:
            paced[method] = measure(service.address, method, SECONDS_PER_METHOD, end, RATE_PER_CLIENT)
            print(f"  paced {method}: {paced[method]}", flush=True)
        result["latency_closed_loop"] = closed
        result["latency_paced"] = paced
        result["paced_calls_per_second_offered"] = CLIENTS * RATE_PER_CLIENT
        result["load_average"] = os.getloadavg()
        result["targets"] = {f"{m}_p99_ms": TARGET_P99_MS for m in METHODS}
        result["targets_met"] = all(paced[m]["p99_ms"] < TARGET_P99_MS and paced[m]["errors"] == 0 for m in METHODS)
    finally:
        if service is not None:
            service.stop()
        if not kept:
            with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return result
