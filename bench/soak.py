"""Soak test (`make soak`): the running system under steady load for a bounded time.

On loopback, in a database of its own, with bearer-token authentication on:
- ingest: one agent streams SOAK_RATE events/s (default 5,000) in batches of
  1,000 for SOAK_SECONDS (default 7,200), each event timed "now" with a fresh id
  (500 users; every 50,000 events one of them suffers 30 failed logons);
- profiles: the continuous evaluator tails the events and raises anomalies;
- query: SOAK_QUERY_CLIENTS clients (default 4) call GetSummary, ListAnomalies,
  GetUser and GetRiskTimeline, SOAK_QUERY_RATE calls/s in all (default 20);
- scorer: idle but running (its schedule off), so its memory is watched too;
- SOAK_IDLE_STREAMS (default 0) streams held open and idle beside the load, as
  an attacker would hold them: StreamEvents of another tenant's agent token on
  ingest, reflection streams without a token on query and profiles, each opened
  again as soon as the server ends or refuses it.

Reported (bench-results/soak.json): errors (target 0: failed ingest batches,
failed query calls, services that exited), events lost (target 0: events sent
minus events stored), p50/p99 of the ingest acknowledgement and of each query
method, and each service's RSS sampled every SOAK_SAMPLE_SECONDS (default 5)
with its slope in MB/hour over the whole run and over the second half, the
evaluator's lag at the end, and the machine's load average (it is shared).
DATABASE_URL names the server (the embedded one otherwise); SOAK_KEEP_DB=1
keeps the database.

Memory target: flat once warm. A detector's memory grows until its windows are
full, so the verdict is on the steady span after SOAK_WARMUP_SECONDS (default
4,500): the RSS averaged over its last 5 minutes may exceed the average over its
first 5 by at most 5%. The longest hold the soak's traffic meets is a failed
logon kept per source address until the address has been quiet for an hour
(twice the built-in Failed logins profile's interval plus lateness); fed the
soak's mix in-process, the detectors' retained entries and RSS level off at
about 70 minutes of event time. A run with less than 30 minutes of steady span
(SOAK_SECONDS=600, say) gives no memory verdict (`flat`: null) and cannot meet
the targets; it still measures errors, losses and latencies.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import psutil
import psycopg
from sqlalchemy.engine import make_url

from ueba.store.databases import postgres_server, scratch_database
from ueba.auth.tokens import create_token
from ueba.client.channel import ChannelConfig, open_channel
from ueba.client.ingest import IngestClient, IngestError
from ueba.db import create_db_engine, libpq_url
from ueba.launcher import ServiceProcess, start_service
from ueba.settings import BaseSettings
from ueba.store.migrate import upgrade
from ueba.v1 import common_pb2, query_pb2, query_pb2_grpc

OUT = Path(__file__).resolve().parent.parent / "bench-results"
TENANT = "soak"
BATCH = 1000
BURST_EVERY, BURST_SIZE = 50_000, 30  # 30 failed logons of one user every 50,000 events (10 s at 5,000/s)
GROWTH_TARGET = 0.05  # steady-span RSS growth, as a share of the RSS
SETTLE_SECONDS = 300  # averaged at each end of the steady span, against the RSS's jitter from batch to batch
MIN_STEADY_SECONDS = 1800  # the shortest steady span that gets a verdict


def _env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


# --- load -----------------------------------------------------------------------------------------

EVENT_MIX = (
    (common_pb2.EVENT_TYPE_LOGON, 0.45), (common_pb2.EVENT_TYPE_LOGOFF, 0.15), (common_pb2.EVENT_TYPE_FILE_DOWNLOAD, 0.15),
    (common_pb2.EVENT_TYPE_FILE_UPLOAD, 0.05), (common_pb2.EVENT_TYPE_HOST_ACCESS, 0.1), (common_pb2.EVENT_TYPE_APP_ACCESS, 0.1),
)
COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "IN", "BR")


class PacedEvents:
    """`rate` events a second for `seconds`, each timed at its creation with a unique id.

    Remembers when each batch's last event was made, so that the ack latency
    (event made -> batch acknowledged) can be measured in order.
    """

    def __init__(self, rate: float, seconds: float, users: int, seed: int = 1):
        self.rate, self.seconds = rate, seconds
        self.users = [f"user{i:04d}" for i in range(users)]
        self.rnd = random.Random(seed)
        self.run = uuid.uuid4().hex[:8]
        self.made = 0
        self.batch_ready: deque[float] = deque()
        self.stop = threading.Event()
        types, weights = zip(*EVENT_MIX)
        self.types, self.weights = types, weights

    def __iter__(self):
        start = time.monotonic()
        while not self.stop.is_set():
            elapsed = time.monotonic() - start
            if elapsed >= self.seconds:
                break
            due = int(elapsed * self.rate) + 1
            if self.made >= due:
                time.sleep(min(0.01, (self.made + 1) / self.rate - elapsed))
                continue
            # Now and then a burst of failed logons (a brute force), so that the evaluator has anomalies to raise.
            yield self._burst_event() if self.made % BURST_EVERY < BURST_SIZE else self._event()
            self.made += 1
            if self.made % BATCH == 0:
                self.batch_ready.append(time.monotonic())
        if self.made % BATCH:
            self.batch_ready.append(time.monotonic())

    def _burst_event(self) -> common_pb2.Event:
        n = self.made // BURST_EVERY
        e = common_pb2.Event(
            event_id=f"{self.run}-{self.made}", user=self.users[(n * 7919) % len(self.users)], type=common_pb2.EVENT_TYPE_LOGON,
            outcome=common_pb2.OUTCOME_FAILURE, source_ip=f"203.0.113.{n % 250 + 1}", source_host="attacker",
            destination_host="dc1", failure_reason="bad password",
        )
        e.time.GetCurrentTime()
        return e

    def _event(self) -> common_pb2.Event:
        r = self.rnd
        user = r.choice(self.users)
        kind = r.choices(self.types, self.weights)[0]
        e = common_pb2.Event(
            event_id=f"{self.run}-{self.made}", user=user, type=kind,
            outcome=common_pb2.OUTCOME_FAILURE if r.random() < 0.05 else common_pb2.OUTCOME_SUCCESS,
            source_ip=f"10.{hash(user) % 250}.{r.randrange(4)}.{r.randrange(1, 250)}",
            source_host=f"ws-{user}", destination_host=f"srv{r.randrange(40)}", application=f"app{r.randrange(12)}",
            department=f"dept{hash(user) % 8}",
        )
        e.geo.country_code = r.choice(COUNTRIES)
        if kind in (common_pb2.EVENT_TYPE_FILE_DOWNLOAD, common_pb2.EVENT_TYPE_FILE_UPLOAD):
            e.bytes = r.randrange(1_000, 5_000_000)
            e.file_count = r.randrange(1, 5)
        e.time.GetCurrentTime()
        return e


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"count": len(values), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(ordered[-1] * 1000, 2)}


class QueryLoad:
    METHODS = ("GetSummary", "ListAnomalies", "GetUser", "GetRiskTimeline")

    def __init__(self, address: str, token: str, clients: int, rate: float, users: list[str]):
        self.address, self.token, self.clients, self.rate, self.users = address, token, clients, rate, users
        self.latency: dict[str, list[float]] = {m: [] for m in self.METHODS}
        self.errors: dict[str, int] = {}
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def _request(self, method: str, rnd: random.Random):
        if method == "GetSummary":
            return query_pb2.GetSummaryRequest()
        if method == "ListAnomalies":
            return query_pb2.ListAnomaliesRequest(page_size=50)
        if method == "GetUser":
            return query_pb2.GetUserRequest(user=rnd.choice(self.users))
        rng = common_pb2.TimeRange()
        rng.start.FromDatetime(datetime.now(timezone.utc) - timedelta(hours=6))
        return query_pb2.GetRiskTimelineRequest(range=rng, bucket_seconds=300)

    def _client(self, n: int) -> None:
        rnd = random.Random(n)
        interval = self.clients / self.rate
        with open_channel(self.address, ChannelConfig(token=self.token)) as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            next_at = time.monotonic() + rnd.uniform(0, interval)
            while not self.stop.wait(max(0.0, next_at - time.monotonic())):
                next_at += interval
                method = rnd.choice(self.METHODS)
                started = time.monotonic()
                try:
                    getattr(stub, method)(self._request(method, rnd), timeout=30)
                    self.latency[method].append(time.monotonic() - started)
                except grpc.RpcError as exc:
                    # GetUser of a user not yet seen is NOT_FOUND: an answer, not an error.
                    if exc.code() == grpc.StatusCode.NOT_FOUND and method == "GetUser":
                        self.latency[method].append(time.monotonic() - started)
                        continue
                    key = f"{method}:{exc.code().name}"
                    self.errors[key] = self.errors.get(key, 0) + 1

    def start(self) -> None:
        for n in range(self.clients):
            t = threading.Thread(target=self._client, args=(n,), daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(35)


class IdleStreams:
    """Streams that send nothing, kept open (or re-opened once a second) until finish()."""

    def __init__(self, targets: list[tuple[str, str, str | None]], count: int):
        self.targets = targets  # (address, method path, token or None), used in turn
        self.count = count
        self.ended: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="idle-streams", daemon=True)
        self._channels: dict[str, grpc.Channel] = {}

    def _open(self, i: int):
        address, path, token = self.targets[i % len(self.targets)]
        channel = self._channels.setdefault(address, grpc.insecure_channel(address))
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        ended = threading.Event()
        # Sends nothing until the call ends, then lets gRPC's sending thread go.
        call = channel.stream_stream(path)(iter(ended.wait, True), metadata=metadata)
        call.add_done_callback(lambda _call: ended.set())
        return call

    def _loop(self) -> None:
        self.calls = [self._open(i) for i in range(self.count)]
        while not self._stop.wait(1.0):
            for i, call in enumerate(self.calls):
                if not call.is_active():
                    code = call.code().name
                    self.ended[code] = self.ended.get(code, 0) + 1
                    self.calls[i] = self._open(i)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> dict:
        self._stop.set()
        self._thread.join(10)
        held = sum(call.is_active() for call in getattr(self, "calls", []))
        for call in getattr(self, "calls", []):
            call.cancel()
        for channel in self._channels.values():
            channel.close()
        return {"streams": self.count, "open_at_end": held, "ended_by_server": self.ended}


# --- memory -----------------------------------------------------------------------------------------

class MemorySampler:
    def __init__(self, services: dict[str, ServiceProcess], every: float):
        self.procs = {name: psutil.Process(s.process.pid) for name, s in services.items()}
        self.every = every
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in services}
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _rss_mb(self, proc: psutil.Process) -> float:
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):  # query workers, if any
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    def _loop(self) -> None:
        while True:
            now = time.monotonic() - self.t0
            for name, proc in self.procs.items():
                try:
                    self.samples[name].append((round(now, 1), round(self._rss_mb(proc), 1)))
                except psutil.NoSuchProcess:
                    pass
            if self.stop.wait(self.every):
                return

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()


def slope_mb_per_hour(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    xs, ys = [p[0] / 3600 for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var, 1) if var else None


def memory_report(samples: list[tuple[float, float]], warmup: float) -> dict:
    if not samples:
        return {}
    half = samples[len(samples) // 2:]
    report = {
        "rss_start_mb": samples[0][1], "rss_end_mb": samples[-1][1], "rss_max_mb": max(s[1] for s in samples),
        "slope_mb_per_hour": slope_mb_per_hour(samples), "second_half_slope_mb_per_hour": slope_mb_per_hour(half),
        "second_half_growth_mb": round(half[-1][1] - half[0][1], 1) if len(half) > 1 else 0.0,
    }
    steady = [s for s in samples if s[0] >= warmup]
    if not steady or steady[-1][0] - steady[0][0] < MIN_STEADY_SECONDS:
        return report | {"steady_from_s": warmup, "flat": None, "samples": samples}
    first = statistics.fmean(y for t, y in steady if t <= steady[0][0] + SETTLE_SECONDS)
    last = statistics.fmean(y for t, y in steady if t >= steady[-1][0] - SETTLE_SECONDS)
    return report | {
        "steady_from_s": warmup,
        "steady_start_mb": round(first, 1), "steady_end_mb": round(last, 1),
        "steady_growth_mb": round(last - first, 1), "steady_slope_mb_per_hour": slope_mb_per_hour(steady),
        "flat": last - first <= GROWTH_TARGET * max(first, 1.0),
        "samples": samples,
    }


# --- the run ------------------------------------------------------------------------------------------

def _count(url: str, sql: str, *params) -> int:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return conn.execute(sql, params).fetchone()[0]


def run(out_dir: Path = OUT) -> dict:
    keep = bool(os.environ.get("SOAK_KEEP_DB"))
    with postgres_server(BaseSettings.from_env().data_dir) as server, scratch_database(server, "ueba_soak", keep) as url:
        return _soak(url, out_dir)


def _soak(url: str, out_dir: Path) -> dict:
    seconds = _env("SOAK_SECONDS", 7200)
    warmup = _env("SOAK_WARMUP_SECONDS", 4500)
    rate = _env("SOAK_RATE", 5000)
    clients = int(_env("SOAK_QUERY_CLIENTS", 4))
    query_rate = _env("SOAK_QUERY_RATE", 20)
    users = int(_env("SOAK_USERS", 500))
    every = _env("SOAK_SAMPLE_SECONDS", 5)
    upgrade(url)
    engine = create_db_engine(url, pool_size=1)
    idle_count = int(_env("SOAK_IDLE_STREAMS", 0))
    with engine.begin() as conn:
        _, agent = create_token(conn, TENANT, "soak-agent", "agent", "soak")
        _, analyst = create_token(conn, TENANT, "soak-analyst", "analyst", "soak")
        _, idler = create_token(conn, "soak-idle", "soak-idler", "agent", "soak")
    engine.dispose()
    log_dir = out_dir / "soak-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    common = {"DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1", "UEBA_AUTH": "tokens"}
    extra = {"scorer": {"UEBA_SCORING_SCHEDULE": "off", "UEBA_ANOMALY_LOG": str(log_dir / "anomaly.log")}}
    services: dict[str, ServiceProcess] = {}
    load_start = os.getloadavg()
    result: dict = {"benchmark": "soak", "settings": {
        "seconds": seconds, "warmup_seconds": warmup, "events_per_second": rate, "batch": BATCH, "query_clients": clients, "query_calls_per_second": query_rate,
        "users": users, "auth": "tokens", "database": make_url(url).database, "idle_streams": idle_count,
    }}
    try:
        for svc in ("ingest", "profiles", "scorer", "query"):
            services[svc] = start_service(svc, {**common, **extra.get(svc, {})}, log_path=log_dir / f"{svc}.log", timeout=120)
        sampler = MemorySampler(services, every)
        sampler.start()
        events = PacedEvents(rate, seconds, users)
        queries = QueryLoad(services["query"].address, analyst, clients, query_rate, events.users)
        queries.start()
        reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        idle = IdleStreams([(services["ingest"].address, "/ueba.v1.IngestService/StreamEvents", idler),
                            (services["query"].address, reflection, None),
                            (services["profiles"].address, reflection, None)], idle_count)
        if idle_count:
            idle.start()
        ack_latency: list[float] = []

        def acked(_n: int) -> None:
            ready = events.batch_ready.popleft()
            ack_latency.append(time.monotonic() - ready)

        ingest_error = None
        started = time.monotonic()
        try:
            with IngestClient(services["ingest"].address, batch_size=BATCH, window=8, token=agent, max_attempts=20) as client:
                totals = client.send(events, progress=acked)
        except IngestError as exc:
            ingest_error, totals = str(exc), None
        send_seconds = time.monotonic() - started
        queries.finish()
        idle_report = idle.finish() if idle_count else None
        # Let the evaluator finish the tail before its lag is measured.
        deadline = time.monotonic() + 120
        lag = None
        while time.monotonic() < deadline:
            lag = _unprocessed(url)
            if lag == 0:
                break
            time.sleep(2)
        sampler.finish()
        exited = {n: s.process.returncode for n, s in services.items() if s.process.poll() is not None}
        stored = _count(url, "SELECT count(*) FROM events WHERE tenant = %s", TENANT)
        anomalies = _count(url, "SELECT count(*) FROM anomalies WHERE tenant = %s", TENANT)
        sent = totals.sent if totals else events.made
        query_errors = sum(queries.errors.values())
        errors = query_errors + (1 if ingest_error else 0) + len(exited) + (totals.rejected if totals else 0)
        lost = sent - stored
        memory = {n: memory_report(s, warmup) for n, s in sampler.samples.items()}
        result.update({
            "errors": errors,
            "events_sent": sent,
            "events_stored": stored,
            "events_lost": lost,
            "events_per_second_achieved": round(sent / send_seconds, 1) if send_seconds else 0,
            "ingest": {
                "error": ingest_error,
                "accepted": totals.accepted if totals else None, "duplicates": totals.duplicates if totals else None,
                "rejected": totals.rejected if totals else None, "reconnects": totals.reconnects if totals else None,
                "ack_latency": percentiles(ack_latency),
            },
            "query": {m: percentiles(v) for m, v in queries.latency.items()} | {"errors": queries.errors},
            "profiles": {"anomalies": anomalies, "unprocessed_events_at_end": lag},
            "services_exited": exited,
            "idle_streams": idle_report,
            "memory": memory,
            "load_average": {"start": load_start, "end": os.getloadavg()},
        })
        result["targets"] = {"errors": 0, "events_lost": 0, "rss_steady_growth_at_most": f"{GROWTH_TARGET:.0%}"}
        result["targets_met"] = errors == 0 and lost == 0 and all(m.get("flat") is True for m in memory.values())
        return result
    finally:
        for svc in services.values():
            svc.stop()


def _unprocessed(url: str) -> int | None:
    """Events the evaluator (the cursor of every tenant, '*') has not processed yet; None before it started."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT snapshot FROM profile_cursors WHERE tenant = '*' LIMIT 1").fetchone()
        if row is None:
            return None
        return conn.execute(
            "SELECT count(*) FROM events WHERE NOT pg_visible_in_snapshot(txid, %s::pg_snapshot)", (row[0],)
        ).fetchone()[0]


def main() -> int:
    OUT.mkdir(exist_ok=True)
    result = run(OUT)
    (OUT / "soak.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    brief = {k: v for k, v in result.items() if k != "memory"}
    brief["memory"] = {n: {k: v for k, v in m.items() if k != "samples"} for n, m in result["memory"].items()}
    print(json.dumps(brief, indent=2, default=str))
    return 0 if result.get("targets_met") else 1


if __name__ == "__main__":
    sys.exit(main())
