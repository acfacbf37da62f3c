"""`ueba up` (what `make run` calls): the whole system on one machine.

Starts Postgres (embedded unless DATABASE_URL is set), applies migrations, starts every service
as its own process, and, the first time (or with --reload), streams a simulated month through
ingest, waits for the profiles and scores the month. A later start serves the stored data at
once. It prints where everything listens and what was found, and serves until interrupted.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ueba.bootstrap import resolve_database_url
from ueba.client.channel import ChannelConfig, open_channel
from ueba.launcher import SERVICES, ServiceProcess, start_service
from ueba.settings import BaseSettings
from ueba.store.migrate import upgrade

if TYPE_CHECKING:
    from ueba.simulator import SimulationConfig

DEFAULT_PORT_BASE = 50051
DEFAULT_METRICS = {"ingest": 9101, "profiles": 9102, "scorer": 9103, "query": 9104, "delivery": 9105}
PROGRESS_AFTER = 2.0  # seconds a phase runs before it shows progress


def register(sub) -> None:
    p = sub.add_parser("up", help="run the whole system locally with simulated activity",
                       description="Start Postgres and the four services; the first time, load a simulated month. "
                                   "A later start serves the stored data at once (--reload loads again).")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--host", default="127.0.0.1", help="address the services listen on")
    p.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                   help="gRPC ports PORT..PORT+4 for ingest, profiles, scorer, query, delivery (default 50051); metrics on "
                        "9101-9105, or PORT+10.. when moved")
    p.add_argument("--no-load", action="store_true", help="start the services without simulated activity")
    p.add_argument("--reload", action="store_true", help="stream the simulation again though data is stored")
    p.add_argument("--exit-after-load", action="store_true", help="stop once the start-up summary is printed")
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(msg, flush=True)


@contextmanager
def phase(desc: str, total: float | None = None, unit: str = "") -> Iterator:
    """A progress bar for a phase, shown only once it has run PROGRESS_AFTER seconds; it ticks
    (elapsed time) even while nothing calls update()."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, total=total, unit=unit, delay=PROGRESS_AFTER, file=sys.stderr, leave=False, disable=None,
               dynamic_ncols=True, bar_format=None if total else "{desc}: {elapsed} {postfix}")  # no bar off a terminal
    stop = threading.Event()

    def tick() -> None:
        # Off a terminal (a log, CI) there is no bar: a line every ten seconds instead.
        step, count = (10.0, 0) if bar.disable else (0.5, 0)
        while not stop.wait(step):
            count += 1
            if not bar.disable:
                bar.refresh()
                continue
            done = f" {bar.n:g}/{total:g}{unit}" if total else ""
            _say(f"{desc}: {count * step:.0f} s{done} {getattr(bar, 'postfix', None) or ''}".rstrip())

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    started = time.monotonic()
    try:
        yield bar
    finally:
        stop.set()
        ticker.join()
        bar.close()
        took = time.monotonic() - started
        if took >= PROGRESS_AFTER:
            _say(f"{desc}: {took:.0f} s")


def _free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _rotate(path: Path) -> Path:
    """Keeps the previous run's file as PATH.1, so logs do not grow run after run."""
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))
    return path


def start_all(database_url: str, host: str, log_dir: Path, port_base: int = DEFAULT_PORT_BASE,
              later: tuple[str, ...] = ()) -> dict[str, Future]:
    """Starts every service, those in `later` once the others are ready (on two cores, a slow
    start beside them delays them all); each future is done when its service printed READY
    (a taken port falls back to a free one)."""
    def start(i: int, name: str) -> ServiceProcess:
        if name in later:
            wait([futures[n] for n in SERVICES if n not in later])
        port = port_base + i
        metrics = DEFAULT_METRICS[name] if port_base == DEFAULT_PORT_BASE else port_base + 10 + i
        env = {
            "DATABASE_URL": database_url,
            "UEBA_LISTEN": f"{host}:{port if _free(host, port) else 0}",
            "UEBA_METRICS_PORT": str(metrics if _free(host, metrics) else 0),
            "UEBA_ANOMALY_LOG": str(log_dir / "anomaly.log"),
        }
        return start_service(name, env, log_path=_rotate(log_dir / f"{name}.log"))

    def console() -> ServiceProcess:
        from services.console.launch import DEFAULT_PORT, start_console

        backends = {name: futures[name].result().address for name in ("query", "profiles", "scorer")}
        port = DEFAULT_PORT if port_base == DEFAULT_PORT_BASE else port_base + 30
        return start_console(backends, f"{host}:{port if _free(host, port) else 0}", _rotate(log_dir / "console.log"))

    _rotate(log_dir / "anomaly.log")
    pool = ThreadPoolExecutor(len(SERVICES) + 1)
    futures = {name: pool.submit(start, i, name) for i, name in enumerate(SERVICES) if name not in later}
    futures |= {name: pool.submit(start, i, name) for i, name in enumerate(SERVICES) if name in later}
    # The console calls query, profiles and scorer, so it starts once they have: it is
    # announced when ready, like a scorer that joins late.
    futures["console"] = pool.submit(console)
    pool.shutdown(wait=False)
    return futures


def _where(name: str, svc: ServiceProcess) -> str:
    return f"http://{svc.address}/  (web pages and HTTP/JSON API)" if name == "console" else svc.address


def _started(futures: dict[str, Future], names) -> dict[str, ServiceProcess]:
    """The named services once ready; if one fails to start, every started one is stopped."""
    try:
        return {name: futures[name].result() for name in names}
    except (RuntimeError, TimeoutError):
        stop_all(futures)
        raise


def stop_all(futures: dict[str, Future]) -> None:
    for future in futures.values():
        try:
            svc = future.result()
        except (RuntimeError, TimeoutError):
            continue
        svc.stop()


def _announce(name: str, svc: ServiceProcess) -> None:
    _say(f"  {name:9s} grpc {svc.address}  metrics :{svc.metrics_port}  log {svc.log_path}")


def simulation_start(database_url: str, tenant: str, config: SimulationConfig,
                     today: datetime | None = None) -> datetime:
    """The first simulated day: that of the simulation of this shape already in the store (its
    event ids tell it), so a run on another day sends the same events, which ingest keeps once,
    not a second month; else the `config.days` days before today (UTC)."""
    import psycopg

    from ueba.db import libpq_url
    from ueba.simulator import start_date

    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        row = conn.execute("SELECT event_id, time FROM events WHERE tenant = %s AND event_id = ANY(%s) LIMIT 1",
                           (tenant, config.day_opening_ids())).fetchone()
    if row is not None:
        return datetime.combine(start_date(*row), datetime.min.time(), tzinfo=timezone.utc)
    today = (today or datetime.now(timezone.utc)).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=config.days)


def load_simulation(address: str, database_url: str, tenant: str, users: int, days: int, seed: int,
                    today: datetime | None = None, channel: ChannelConfig | None = None) -> datetime:
    """Streams the simulation into ingest with a bar in simulated days; returns the first day.
    `channel` carries a token and TLS for services that ask for them."""
    from ueba.client.ingest import IngestClient
    from ueba.simulator import SimulationConfig, simulate

    shape = SimulationConfig(users=users, days=days, seed=seed)
    start = simulation_start(database_url, tenant, shape, today)
    sim = simulate(dataclasses.replace(shape, start=start))
    with phase("streaming the simulated month", total=days, unit=" days") as bar:
        def timed(events):
            for i, event in enumerate(events):
                if i % 2000 == 0:
                    bar.n = round(min(days, (event.time.ToDatetime(tzinfo=timezone.utc) - start) / timedelta(days=1)), 1)
                    bar.set_postfix_str(f"{i:,} events", refresh=False)
                yield event

        with IngestClient(address, batch_size=2000, channel=channel) as client:
            totals = client.send(timed(sim.events()))
    _say(
        f"ingest: {totals.sent:,} sent, {totals.accepted:,} stored, {totals.duplicates:,} duplicates, "
        f"{totals.rejected:,} rejected; {len(sim.labels)} labelled scenarios injected"
    )
    return start


def wait_for_profiles(database_url: str, start: datetime, days: int, quiet_seconds: float = 3.0,
                      timeout: float = 300.0) -> None:
    """Waits until the evaluator has read the whole month and raised nothing new for a few seconds."""
    import psycopg

    from ueba.db import libpq_url

    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    with phase("profiles evaluating the month", total=days, unit=" days") as bar, \
            psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            (count,) = conn.execute("SELECT count(*) FROM anomalies WHERE source = 'rule'").fetchone()
            (high_water,) = conn.execute("SELECT max(high_water) FROM profile_cursors").fetchone()
            if high_water is not None:
                bar.n = round(max(0.0, min(days, (high_water - start) / timedelta(days=1))), 1)
            bar.set_postfix_str(f"{count:,} rule anomalies", refresh=False)
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet_seconds:
                return
            time.sleep(0.5)


SCORING_CHUNK_DAYS = 7  # a run per week: a bar with an ETA, and only a few baseline loads


def run_scoring(address: str, database_url: str, start: datetime, days: int, channel: ChannelConfig | None = None) -> None:
    """Scores the simulated days a week at a time, oldest first, so the bar has a total and an ETA."""
    from google.protobuf.timestamp_pb2 import Timestamp

    from ueba.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    figures = {"users": 0, "event_scores": 0, "user_scores": 0, "anomalies": 0}
    with open_channel(address, channel) as connection, phase("scoring the month", total=days, unit=" days") as bar:
        stub = scorer_pb2_grpc.ScorerServiceStub(connection)
        day = start
        while day < end:
            a, b = Timestamp(), Timestamp()
            a.FromDatetime(day)
            step = min(end, day + timedelta(days=SCORING_CHUNK_DAYS))
            b.FromDatetime(step)
            run = stub.RunScoring(scorer_pb2.RunScoringRequest(range=common_pb2.TimeRange(start=a, end=b)), timeout=1800)
            if run.status != scorer_pb2.RUN_STATUS_SUCCEEDED:
                raise RuntimeError(f"scoring {day:%Y-%m-%d} failed: {run.error}")
            figures["users"] = max(figures["users"], run.users_scored)
            for key in ("event_scores", "user_scores", "anomalies"):
                figures[key] += getattr(run, key)
            bar.update(round((step - day) / timedelta(days=1), 1))
            day = step
    learning = still_learning(database_url)
    _say(
        f"scorer: {figures['users']:,} users, {figures['event_scores']:,} hourly model scores, "
        f"{figures['user_scores']:,} user-day scores, {figures['anomalies']:,} model anomalies"
        + (f", {learning} still learning" if learning else "")
    )


def still_learning(database_url: str) -> int:
    """Users whose latest daily score is still within their baseline period."""
    import psycopg

    from ueba.db import libpq_url

    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT ON (tenant, user_name) learning FROM user_scores "
            "ORDER BY tenant, user_name, day DESC) latest WHERE learning"
        ).fetchone()[0]


def stored_counts(database_url: str) -> dict[str, int]:
    import psycopg

    from ueba.db import libpq_url

    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # fixed table names
            for table in ("events", "users", "anomalies", "event_scores", "user_scores")
        }


def has_events(database_url: str) -> bool:
    import psycopg

    from ueba.db import libpq_url

    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        return conn.execute("SELECT EXISTS (SELECT 1 FROM events)").fetchone()[0]


def run(args) -> int:
    settings = BaseSettings.from_env()
    data_dir = Path(settings.data_dir) / "run"
    data_dir.mkdir(parents=True, exist_ok=True)
    with phase("starting Postgres"):
        database_url = resolve_database_url(settings)
    _say("Postgres " + ("(DATABASE_URL)" if settings.database_url else f"(embedded, {data_dir.parent / 'pg'})") + " ready")
    with phase("applying migrations"):
        upgrade(database_url)
    load = not args.no_load and (args.reload or not has_events(database_url))
    # Serving stored data needs no scorer at once: it starts once the others are ready (its
    # imports are the slowest) and is announced when it is.
    later = () if load else ("scorer",)
    futures = start_all(database_url, args.host, data_dir, args.port_base, later)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        first = tuple(n for n in SERVICES if n not in later)
        with phase("starting services"):
            services = _started(futures, first)
        for name, svc in services.items():
            _announce(name, svc)
        if load:
            start = load_simulation(services["ingest"].address, database_url, settings.tenant, args.users, args.days,
                                    args.seed)
            wait_for_profiles(database_url, start, args.days)
            run_scoring(services["scorer"].address, database_url, start, args.days)
            _say("stored: " + ", ".join(f"{v:,} {k}" for k, v in stored_counts(database_url).items()))
        elif not args.no_load:
            _say("resuming on the stored data (`ueba up --reload` streams the simulation again)")
        from ueba.cli.query import print_summary

        print_summary(services["query"].address)
        _say("")
        _say("UEBA is running. Connect with the `ueba` command (e.g. `.venv/bin/ueba summary`) or any gRPC client:")
        for name, svc in services.items():
            _say(f"  {name:9s} {_where(name, svc)}")
        _say(f"  postgres  {database_url}")
        if args.exit_after_load:
            return 0
        _say("Press Ctrl-C to stop.")
        while not stop.wait(1.0):
            for name, future in futures.items():
                if name not in services and future.done():
                    if future.exception() is not None:
                        _say(f"{name} did not start: {future.exception()}")
                        return 1
                    services[name] = future.result()
                    _say(f"  {name:9s} {_where(name, services[name])} (ready now)")
            for name, svc in services.items():
                if svc.process.poll() is not None:
                    _say(f"{name} exited with {svc.process.returncode}; see {svc.log_path}")
                    return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        _say("stopping services")
        stop_all(futures)
