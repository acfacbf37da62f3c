"""The console against real services: a small simulated organisation loaded once per session.

Four service processes and the console, the way `ueba up` runs them, on a
database of this session's own; the organisation is small (20 users, 10 days)
so that loading, the profiles and a scoring run take well under a minute.
They ask for tokens (UEBA_AUTH=tokens), so that the role and tenant tests run on
the same system as the pages and the API: the organisation is the tenant
TENANT, and `api` and the browser act as its admin.
"""

from __future__ import annotations

import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from ueba.store.databases import drop_database, new_database
from services.console.launch import console_url, start_console
from tests.conftest import ROOT
from ueba.auth.tokens import create_token
from ueba.client.channel import ChannelConfig
from ueba.db import create_db_engine
from ueba.launcher import ServiceProcess, start_service
from ueba.store.migrate import upgrade

OUTPUT = ROOT / ".data" / "test-output" / "console"
BACKENDS = ("query", "profiles", "scorer")
AUTH = {"UEBA_AUTH": "tokens", "UEBA_AUTH_CACHE_SECONDS": "0.2", "UEBA_RATE_LIMIT_PER_SECOND": "0"}
TENANT = "default"


def mint(engine: Engine, tenant: str, role: str) -> str:
    """The secret of a new token."""
    with engine.begin() as conn:
        return create_token(conn, tenant, f"{role}-{uuid.uuid4().hex[:6]}", role, "tests")[1]


@dataclass
class Running:
    database_url: str
    services: dict[str, ServiceProcess]
    console: ServiceProcess
    engine: Engine | None = None
    token: str = ""  # an admin's of TENANT, when the services ask for tokens

    @property
    def url(self) -> str:
        return console_url(self.console)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def stop(self) -> None:
        stop_all([self.console, *self.services.values()])


def stop_all(processes: list[ServiceProcess]) -> None:
    """SIGTERM to every process first, then wait: their drains overlap instead of adding up."""
    for proc in processes:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
    for proc in processes:
        proc.stop()


def start_system(database_url: str, names: tuple[str, ...], log_dir: Path, env: dict[str, str] | None = None) -> Running:
    """The services side by side (each waits on its own imports and database checks), then the console."""
    log_dir.mkdir(parents=True, exist_ok=True)
    # No call is in flight when a fixture stops the system: a drain would only wait.
    common = {"DATABASE_URL": database_url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
              "UEBA_DRAIN_SECONDS": "0", **(env or {})}
    with ThreadPoolExecutor(len(names)) as pool:
        futures = {name: pool.submit(start_service, name, common, log_path=log_dir / f"{name}.log") for name in names}
    services = {name: f.result() for name, f in futures.items() if f.exception() is None}
    try:
        for f in futures.values():
            if f.exception() is not None:
                raise f.exception()
        console = start_console({n: s.address for n, s in services.items()}, "127.0.0.1:0",
                                log_dir / "console.log", env={"UEBA_DRAIN_SECONDS": "0", **(env or {})})
    except BaseException:
        stop_all(list(services.values()))
        raise
    return Running(database_url, services, console)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def organisation(server_url, output_dir) -> Running:
    """The four services and the console, with a simulated organisation loaded and scored."""
    from ueba.cli.up import load_simulation, run_scoring, wait_for_profiles

    name, url = new_database(server_url, "ueba_console")
    running, engine = None, None
    try:
        upgrade(url)
        engine = create_db_engine(url, pool_size=2)
        token = mint(engine, TENANT, "admin")
        running = start_system(url, ("ingest", *BACKENDS), output_dir / "logs", env=AUTH)
        running.engine, running.token = engine, token
        channel = ChannelConfig(token=token)
        start = load_simulation(running.services["ingest"].address, url, TENANT, users=20, days=10, seed=3,
                                channel=channel)
        wait_for_profiles(url, start, 10)
        run_scoring(running.services["scorer"].address, url, start, 10, channel=channel)
        yield running
    finally:
        if running is not None:
            running.stop()
        if engine is not None:
            engine.dispose()
        drop_database(server_url, name)


@pytest.fixture(scope="session")
def without_tokens(migrated_databases, output_dir) -> Running:
    """The query service (which serves cases) and the console with UEBA_AUTH=off, on an empty database."""
    name, url = migrated_databases.new("ueba_console_open")
    running = start_system(url, ("query",), output_dir / "logs-open", env={"UEBA_AUTH": "off"})
    running.engine = create_db_engine(url, pool_size=1)
    try:
        yield running
    finally:
        running.stop()
        running.engine.dispose()
        migrated_databases.drop(name)


@pytest.fixture
def api(organisation) -> httpx.Client:
    with organisation.client(organisation.token) as client:
        yield client
