"""Query service latency under 50 concurrent clients on a realistic store.

Store: 1,000 users, 5 million events over 30 days, 100,000 anomalies (rule and
model, 80% still new), 30 days of daily user scores and 3 days of hourly event
scores for every user and model, generated directly in SQL (generate_series),
not through ingest. BENCH_QUERY_DATABASE=<name> keeps the store between runs
(made once, migrated on each run, never dropped); without it a throwaway
database is built and dropped.

Service: `python -m services.query` as its own process, UEBA_QUERY_WORKERS
server processes (BENCH_QUERY_WORKERS, default 2, the machine's cores).

Load model (what the target is judged on): 50 clients, each its own gRPC
connection (as 50 dashboards or playbook runners would be), in two client
processes. Each client loops: it picks one of GetSummary, ListAnomalies,
GetUser and GetUserTimeline at random with varied arguments, calls it, and
starts its next call 0.5 to 1.0 s (uniform jitter) after the previous one
started, or at once if that call took longer. That offers about 67 calls/s in
all (50 / 0.75 s), a quarter of them per method ("mixed"). The same pacing is
then run with one method at a time (all 67 calls/s on that method), which is
harsher for the costlier methods. Finally, for information, a closed loop with
no think time (each client calls again as soon as its answer arrives) measures
saturation throughput; its latency is mostly the queue of 50 clients.

Reported per phase and method: calls, errors, calls/s, p50/p99/max latency
(ListAnomalies also per query and order, `ListAnomalies_by_query`); per phase: CPU seconds per second of the query processes (supervisor and
workers) and of the Postgres backends serving this database, and the load
average at the start and end (the machine may be shared). Target: p99 under
20 ms for each of the four methods in the paced runs, without errors.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from ueba.store.databases import create_database, database_exists, postgres_server, scratch_database
from ueba.db import libpq_url, with_database
from ueba.launcher import start_service
from ueba.settings import BaseSettings
from ueba.store.migrate import upgrade
from ueba.store.partitions import EVENT_SCORES, ensure_partitions

USERS = 1000
EVENTS = 5_000_000
ANOMALIES = 100_000
DAYS = 30
SCORED_DAYS = 3
CLIENTS = 50
CLIENT_PROCESSES = 2
THINK_SECONDS = (0.5, 1.0)
PACED_SECONDS = float(os.environ.get("BENCH_QUERY_SECONDS", "20"))
CLOSED_SECONDS = float(os.environ.get("BENCH_QUERY_CLOSED_SECONDS", "10"))
WORKERS = int(os.environ.get("BENCH_QUERY_WORKERS", "2"))
TARGET_P99_MS = 20.0  # as bench/summary.py (round 2)
METHODS = ("GetSummary", "ListAnomalies", "GetUser", "GetUserTimeline")
FILTERS = ["", "risk>=high", "status:new", '"new country"', "source:model risk>=medium"]

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
        # The scored hours end at `end`'s day (date_trunc in the session's time zone: a day of margin).
        last = end.astimezone(timezone.utc)
        ensure_partitions(conn, {(last - timedelta(days=i)).date() for i in range(SCORED_DAYS + 2)}, EVENT_SCORES)
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




def _request(stub, method: str, rnd: random.Random, day0: datetime):
    """A call of `method` with varied arguments, as a zero-argument callable, and its shape: for
    ListAnomalies the query and order (a user's name left out), else the method's name."""
    from ueba.v1 import query_pb2

    user = f"user{rnd.randrange(USERS):04d}"
    if method == "GetSummary":
        req = query_pb2.GetSummaryRequest()
        req.range.start.FromDatetime(datetime.now(timezone.utc) - timedelta(days=rnd.choice([1, 7, 30])))
        return (lambda: stub.GetSummary(req, timeout=30)), method
    if method == "ListAnomalies":
        query = rnd.choice(FILTERS + [f"user:{user}"])
        req = query_pb2.ListAnomaliesRequest(
            filter=query_pb2.AnomalyFilter(query=query), page_size=50, order_by=rnd.choice(["time desc", "risk desc"]))
        return (lambda: stub.ListAnomalies(req, timeout=30)), f"{'user:' if query.startswith('user:') else query} | {req.order_by}"
    if method == "GetUser":
        req = query_pb2.GetUserRequest(user=user)
        return (lambda: stub.GetUser(req, timeout=30)), method
    req = query_pb2.GetUserTimelineRequest(user=user)
    req.day.FromDatetime(day0 - timedelta(days=rnd.randrange(1, SCORED_DAYS + 1)))
    return (lambda: stub.GetUserTimeline(req, timeout=30)), method


def _client_process(address: str, methods: tuple[str, ...], threads: int, seconds: float, seed: int, end_iso: str,
                    paced: bool, queue) -> None:
    import grpc

    from ueba.v1 import query_pb2_grpc

    day0 = datetime.fromisoformat(end_iso).replace(hour=0, minute=0, second=0, microsecond=0)
    results: dict[str, list[float]] = {m: [] for m in methods}
    errors = {m: 0 for m in methods}
    shapes: dict[str, list[float]] = {}
    lock = threading.Lock()
    ready = threading.Barrier(threads + 1)

    def client(n: int) -> None:
        rnd = random.Random(seed * 1000 + n)
        # Its own connection: channels with the same target would otherwise share one.
        channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = query_pb2_grpc.QueryServiceStub(channel)
        mine = {m: [] for m in methods}
        failed = {m: 0 for m in methods}
        mine_by_shape: dict[str, list[float]] = {}
        ready.wait()
        deadline = time.monotonic() + seconds
        next_at = time.monotonic() + (rnd.uniform(*THINK_SECONDS) if paced else 0.0)  # clients start spread out
        while True:
            if paced:
                time.sleep(max(0.0, next_at - time.monotonic()))
            if time.monotonic() >= deadline:
                break
            method = rnd.choice(methods)
            call, shape = _request(stub, method, rnd, day0)
            started = time.perf_counter()
            next_at = time.monotonic() + rnd.uniform(*THINK_SECONDS)
            try:
                call()
                mine[method].append(time.perf_counter() - started)
                mine_by_shape.setdefault(shape, []).append(mine[method][-1])
            except grpc.RpcError:
                failed[method] += 1
        channel.close()
        with lock:
            for m in methods:
                results[m].extend(mine[m])
                errors[m] += failed[m]
            for shape, latencies in mine_by_shape.items():
                shapes.setdefault(shape, []).extend(latencies)

    pool = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for th in pool:
        th.start()
    ready.wait()  # every client connected: the measured time starts now
    queue.put(("started", None))
    for th in pool:
        th.join()
    queue.put(("done", (results, errors, shapes)))


def _cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds of these processes so far (gone ones count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def _service_pids(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return [pid, *children]


class BackendCpu:
    """CPU seconds of the Postgres backends serving one database, sampled every half second.

    Backends come and go (a pool's overflow connections close on return), so
    each one's last sample is kept: one that exits loses at most its last half
    second, one that starts during the run counts from its start.
    """

    def __init__(self, url: str, database: str):
        self.url, self.database = url, database
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self, conn) -> None:
        pids = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (self.database,))]
        for pid in pids:
            cpu = _cpu_seconds([pid])
            self.first.setdefault(pid, cpu if not self._thread.is_alive() else 0.0)
            self.last[pid] = cpu

    def _loop(self) -> None:
        with psycopg.connect(libpq_url(self.url), autocommit=True) as conn:
            while not self._stop.wait(0.5):
                self._sample(conn)
            self._sample(conn)

    def start(self) -> None:
        with psycopg.connect(libpq_url(self.url), autocommit=True) as conn:
            self._sample(conn)  # backends already open: count from now
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self.last[pid] - self.first.get(pid, 0.0) for pid in self.last)


def _summarise(latencies: list[float], errors: int, seconds: float) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0] if ms else 0.0] * 99
    return {"calls": len(ms), "errors": errors, "per_second": round(len(ms) / seconds, 1),
            "p50_ms": round(q[49], 2), "p99_ms": round(q[98], 2), "max_ms": round(ms[-1], 2) if ms else 0.0}


def measure(service, url: str, database: str, methods: tuple[str, ...], seconds: float, end: datetime, paced: bool) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    per = CLIENTS // CLIENT_PROCESSES
    procs = [ctx.Process(target=_client_process, args=(service.address, methods, per, seconds, i, end.isoformat(), paced, queue))
             for i in range(CLIENT_PROCESSES)]
    for p in procs:
        p.start()
    for _ in procs:
        assert queue.get()[0] == "started"
    service_pids = _service_pids(service.process.pid)
    backends = BackendCpu(url, database)
    load_start = os.getloadavg()
    backends.start()
    cpu0, t0 = _cpu_seconds(service_pids), time.monotonic()
    results: dict[str, list[float]] = {m: [] for m in methods}
    errors = {m: 0 for m in methods}
    shapes: dict[str, list[float]] = {}
    for _ in procs:
        kind, (res, err, shaped) = queue.get()
        for m in methods:
            results[m].extend(res[m])
            errors[m] += err[m]
        for shape, latencies in shaped.items():
            shapes.setdefault(shape, []).extend(latencies)
    elapsed = time.monotonic() - t0
    cpu1, postgres_cpu = _cpu_seconds(service_pids), backends.stop()
    for p in procs:
        p.join()
    out = {m: _summarise(results[m], errors[m], elapsed) for m in methods}
    if len(methods) > 1:
        out["all"] = _summarise([x for m in methods for x in results[m]], sum(errors.values()), elapsed)
    if "ListAnomalies" in methods:
        # Which queries make its tail (round 3: a description search's capped count).
        out["ListAnomalies_by_query"] = {
            shape: _summarise(latencies, 0, elapsed) for shape, latencies in sorted(shapes.items()) if "|" in shape}
    out["cpu_query_per_second"] = round((cpu1 - cpu0) / elapsed, 3)
    out["cpu_postgres_per_second"] = round(postgres_cpu / elapsed, 3)
    out["load_average_start"] = [round(x, 2) for x in load_start]
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


@contextmanager
def _store(server_url: str) -> Iterator[tuple[str, bool]]:
    """The store's URL and whether it is new (to be generated): BENCH_QUERY_DATABASE, made when
    missing and never dropped, so that the 5 million events are generated once; else a throwaway one."""
    kept = os.environ.get("BENCH_QUERY_DATABASE", "")
    if not kept:
        with scratch_database(server_url, "ueba_bench_query") as url:
            yield url, True
    elif database_exists(server_url, kept):
        yield with_database(server_url, kept), False
    else:
        yield create_database(server_url, kept), True


# What the warm-up rewrites: generate()'s VACUUM ANALYZE saw every rollup delta unmerged and no
# user risk. With those statistics the summary counted unmerged deltas by a scan of all 25,568
# rollup rows (the planner expected them all unmerged) and sorted every user for the riskiest;
# autovacuum analyzes them within a minute on a production server, but a server with autovacuum
# off (CI) kept them for good.
REWRITTEN = ("anomaly_rollup", "event_counts", "user_risk", "user_risk_dirty", "query_rollup_versions", "risk_hour_totals")


def analyze_rewritten(url: str, timeout: float = 120.0) -> None:
    """ANALYZE of those tables once the service has merged every rollup delta (its maintenance, within seconds)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        while conn.execute("SELECT EXISTS (SELECT 1 FROM anomaly_rollup WHERE NOT merged)").fetchone()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError("the query service left rollup deltas unmerged")
            time.sleep(0.5)
        conn.execute(f"ANALYZE {', '.join(REWRITTEN)}")  # fixed names, no input


def risk_timeline(address: str, end: datetime, calls: int = 30) -> dict:
    """GetRiskTimeline over the 30 days before `end` in hourly buckets, one client, the two paths
    interleaved: a start on a UTC hour (merged hour totals) and one 23 minutes past (per bucket)."""
    import grpc

    from ueba.v1 import common_pb2, query_pb2, query_pb2_grpc

    on_hour = end.replace(minute=0, second=0, microsecond=0) - timedelta(days=30)
    starts = {"start_on_hour": on_hour, "start_between_hours": on_hour + timedelta(minutes=23)}
    stub = query_pb2_grpc.QueryServiceStub(grpc.insecure_channel(address))
    latencies: dict[str, list[float]] = {name: [] for name in starts}
    load_before = [round(x, 2) for x in os.getloadavg()]
    for i in range(calls + 2):  # the first two of each warm the prepared statements
        for name, start in starts.items():
            span = common_pb2.TimeRange()
            span.start.FromDatetime(start)
            span.end.FromDatetime(start + timedelta(days=30))
            began = time.perf_counter()
            stub.GetRiskTimeline(query_pb2.GetRiskTimelineRequest(range=span, bucket_seconds=3600), timeout=60)
            if i >= 2:
                latencies[name].append((time.perf_counter() - began) * 1000)
    out: dict = {"calls": calls, "load_average_before": load_before}
    for name, values in latencies.items():
        values.sort()
        out[name] = {"p50_ms": round(statistics.median(values), 1), "p90_ms": round(values[int(0.9 * (len(values) - 1))], 1)}
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def run(out_dir: Path) -> dict:
    settings = BaseSettings.from_env()
    with postgres_server(settings.data_dir) as server_url, _store(server_url) as (url, new):
        return _run(out_dir, url, new)


def _run(out_dir: Path, url: str, new: bool) -> dict:
    name = make_url(url).database
    result: dict = {"users": USERS, "events": EVENTS, "anomalies": ANOMALIES, "clients": CLIENTS,
                    "client_processes": CLIENT_PROCESSES, "think_seconds": THINK_SECONDS,
                    "offered_calls_per_second": round(CLIENTS / statistics.mean(THINK_SECONDS), 1),
                    "query_workers": WORKERS, "paced_seconds": PACED_SECONDS, "closed_loop_seconds": CLOSED_SECONDS,
                    "cores": os.cpu_count(), "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    service = None
    try:
        upgrade(url)
        end = datetime.now(timezone.utc)
        if new:
            result["generate"] = generate(url, end)
        else:
            with psycopg.connect(libpq_url(url)) as conn:
                end = conn.execute("SELECT max(time) FROM events").fetchone()[0] or end
            result["dataset_age_hours"] = round((datetime.now(timezone.utc) - end).total_seconds() / 3600, 1)
        log = out_dir / "query-bench-service.log"
        service = start_service("query", {"DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
                                          "UEBA_LOG_LEVEL": "WARNING", "UEBA_QUERY_WORKERS": str(WORKERS)}, log_path=log)
        measure(service, url, name, METHODS, 3.0, end, paced=False)  # warm-up: prepared statements, caches, first refresh
        analyze_rewritten(url)
        result["paced_mixed"] = measure(service, url, name, METHODS, PACED_SECONDS, end, paced=True)
        print(f"  paced, mixed: {result['paced_mixed']}", flush=True)
        result["paced_each"] = {}
        for method in METHODS:
            result["paced_each"][method] = measure(service, url, name, (method,), PACED_SECONDS, end, paced=True)
            print(f"  paced, {method} only: {result['paced_each'][method]}", flush=True)
        result["closed_loop_mixed"] = measure(service, url, name, METHODS, CLOSED_SECONDS, end, paced=False)
        print(f"  closed loop, mixed: {result['closed_loop_mixed']}", flush=True)
        result["risk_timeline"] = risk_timeline(service.address, end)
        print(f"  GetRiskTimeline, 30 days hourly: {result['risk_timeline']}", flush=True)
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        result["targets"] = {f"{m}_p99_ms": TARGET_P99_MS for m in METHODS}
        paced = [result["paced_mixed"][m] for m in METHODS] + [result["paced_each"][m][m] for m in METHODS]
        result["targets_met"] = all(r["p99_ms"] < TARGET_P99_MS and r["errors"] == 0 for r in paced)
    finally:
        if service is not None:
            service.stop()
    return result
