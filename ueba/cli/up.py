"""`ueba up` (what `make run` calls): the whole system on one machine.

Starts Postgres (embedded unless DATABASE_URL is set), applies migrations,
starts every service as its own process, streams a simulated month through
ingest, lets the profiles and the scorer work, prints where everything
listens and what was found, and serves until interrupted.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc

from ueba.bootstrap import resolve_database_url
from ueba.launcher import SERVICES, ServiceProcess, start_service
from ueba.settings import BaseSettings
from ueba.store.migrate import upgrade

DEFAULT_PORTS = {"ingest": 50051, "profiles": 50052, "scorer": 50053, "query": 50054}
DEFAULT_METRICS = {"ingest": 9101, "profiles": 9102, "scorer": 9103, "query": 9104}


def register(sub) -> None:
    p = sub.add_parser("up", help="run the whole system locally with simulated activity")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--host", default="127.0.0.1", help="address the services listen on")
    p.add_argument("--no-load", action="store_true", help="start the services without simulated activity")
    p.add_argument("--exit-after-load", action="store_true", help="stop once the start-up summary is printed")
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(msg, flush=True)


def _free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def start_all(database_url: str, host: str, log_dir: Path) -> dict[str, ServiceProcess]:
    started: dict[str, ServiceProcess] = {}
    for name in SERVICES:
        port = DEFAULT_PORTS[name] if _free(host, DEFAULT_PORTS[name]) else 0
        metrics = DEFAULT_METRICS[name] if _free(host, DEFAULT_METRICS[name]) else 0
        env = {
            "DATABASE_URL": database_url,
            "UEBA_LISTEN": f"{host}:{port}",
            "UEBA_METRICS_PORT": str(metrics),
            "UEBA_ANOMALY_LOG": str(log_dir / "anomaly.log"),
        }
        started[name] = start_service(name, env, log_path=log_dir / f"{name}.log")
    return started


def load_simulation(address: str, users: int, days: int, seed: int) -> None:
    from ueba.client.ingest import IngestClient
    from ueba.simulator import SimulationConfig, simulate
    from tqdm import tqdm

    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    sim = simulate(SimulationConfig(users=users, days=days, seed=seed, start=today - timedelta(days=days)))
    bar = tqdm(desc="streaming simulated events", unit=" events", file=sys.stderr)
    with IngestClient(address, batch_size=2000) as client:
        totals = client.send(sim.events(), progress=bar.update)
    bar.close()
    _say(
        f"ingest: {totals.sent:,} sent, {totals.accepted:,} stored, {totals.duplicates:,} duplicates, "
        f"{totals.rejected:,} rejected; {len(sim.labels)} labelled scenarios injected"
    )


def wait_for_profiles(database_url: str, quiet_seconds: float = 3.0, timeout: float = 300.0) -> None:
    """Waits until the evaluator has stopped raising anomalies for a few seconds."""
    import psycopg

    from ueba.db import libpq_url

    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            (count,) = conn.execute("SELECT count(*) FROM anomalies WHERE source = 'rule'").fetchone()
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet_seconds:
                return
            time.sleep(0.5)


def run_scoring(address: str, days: int) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    from ueba.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    start, stop = Timestamp(), Timestamp()
    start.FromDatetime(end - timedelta(days=days))
    stop.FromDatetime(end)
    with grpc.insecure_channel(address) as channel:
        run = scorer_pb2_grpc.ScorerServiceStub(channel).RunScoring(
            scorer_pb2.RunScoringRequest(range=common_pb2.TimeRange(start=start, end=stop)), timeout=1800
        )
    _say(
        f"scorer: {run.users_scored:,} users, {run.event_scores:,} hourly model scores, "
        f"{run.user_scores:,} user-day scores, {run.anomalies:,} model anomalies, {run.learning_users} still learning"
    )


def stored_counts(database_url: str) -> dict[str, int]:
    import psycopg

    from ueba.db import libpq_url

    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # fixed table names
            for table in ("events", "users", "anomalies", "event_scores", "user_scores")
        }


def run(args) -> int:
    settings = BaseSettings.from_env()
    data_dir = Path(settings.data_dir) / "run"
    data_dir.mkdir(parents=True, exist_ok=True)
    _say("starting Postgres" + (" (DATABASE_URL)" if settings.database_url else f" (embedded, {data_dir.parent / 'pg'})"))
    database_url = resolve_database_url(settings)
    upgrade(database_url)
    _say("migrations applied; starting services")
    services = start_all(database_url, args.host, data_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for name, svc in services.items():
            _say(f"  {name:9s} grpc {svc.address}  metrics :{svc.metrics_port}  log {svc.log_path}")
        if not args.no_load and "ingest" in services:
            load_simulation(services["ingest"].address, args.users, args.days, args.seed)
            if "profiles" in services:
                wait_for_profiles(database_url)
            if "scorer" in services:
                run_scoring(services["scorer"].address, args.days)
        counts = stored_counts(database_url)
        _say("stored: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
        if "query" in services:
            from ueba.cli.query import print_summary

            print_summary(services["query"].address)
        _say("")
        _say("UEBA is running. Connect with the `ueba` command (e.g. `.venv/bin/ueba summary`) or any gRPC client:")
        for name, svc in services.items():
            _say(f"  {name:9s} {svc.address}")
        _say(f"  postgres  {database_url}")
        if args.exit_after_load:
            return 0
        _say("Press Ctrl-C to stop.")
        while not stop.wait(1.0):
            for name, svc in services.items():
                if svc.process.poll() is not None:
                    _say(f"{name} exited with {svc.process.returncode}; see {svc.log_path}")
                    return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        _say("stopping services")
        for svc in services.values():
            svc.stop()
