"""Fixtures of the security tests: a database of their own, a test CA, and the four
services in this process with bearer-token authentication on."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import grpc
import pytest
from sqlalchemy import Engine

from ueba.store.databases import drop_database, new_database
from ueba.auth.tokens import create_token
from ueba.db import create_db_engine
from ueba.store.migrate import upgrade

from .rpcs import SERVICES

AUTH_ENV = {
    "UEBA_AUTH": "tokens",
    "UEBA_AUTH_CACHE_SECONDS": "0.2",  # revocations show within a test's patience
    "UEBA_RATE_LIMIT_PER_SECOND": "0",
    "UEBA_METRICS_PORT": "-1",
    "UEBA_LISTEN": "127.0.0.1:0",
}


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    pytest.importorskip("cryptography", reason="the tests make their certificates with `cryptography`")
    from .pki import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def security_url(server_url):
    """A migrated database of the security tests alone (servers here mark runs, seed tenants, ...)."""
    name, url = new_database(server_url, "ueba_sec")
    upgrade(url)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="session")
def security_engine(security_url) -> Engine:
    eng = create_db_engine(security_url, pool_size=4)
    yield eng
    eng.dispose()


def mint(engine: Engine, tenant: str, role: str, name: str | None = None) -> tuple[str, str]:
    """(token id, secret) of a new token."""
    with engine.begin() as conn:
        record, secret = create_token(conn, tenant, name or f"{role}-{uuid.uuid4().hex[:6]}", role, "tests")
    return record.id, secret


def settings_for(service: str, url: str, env: dict[str, str]):
    from services.ingest.settings import IngestSettings
    from services.profiles.settings import ProfilesSettings
    from services.query.settings import QuerySettings
    from services.delivery.settings import DeliverySettings
    from services.scorer.settings import ScorerSettings

    classes = {"ingest": IngestSettings, "profiles": ProfilesSettings, "scorer": ScorerSettings, "query": QuerySettings,
               "delivery": DeliverySettings}
    return classes[service].from_env({"DATABASE_URL": url, **env})


def create(service: str, settings, engine: Engine):
    if service == "ingest":
        from services.ingest.server import create_server
    elif service == "profiles":
        from services.profiles.server import create_server
    elif service == "scorer":
        from services.scorer.server import create_server
    elif service == "delivery":
        from services.delivery.server import create_server
    else:
        from services.query.server import create_server

        return create_server(settings, engine, maintenance=False)
    return create_server(settings, engine)


# Background work off, so that only the calls under test write anything.
QUIET = {
    "UEBA_PROFILES_EVALUATE": "false",
    "UEBA_PROFILES_SEED_DEFAULTS": "false",
    "UEBA_SCORING_SCHEDULE": "off",
    "UEBA_QUERY_MAINTENANCE": "false",
    "UEBA_ANOMALY_LOG": "off",
}


@dataclass
class Stack:
    engine: Engine
    channels: dict[str, grpc.Channel] = field(default_factory=dict)
    servers: list = field(default_factory=list)

    def channel(self, service: str) -> grpc.Channel:
        return self.channels[service]

    def token(self, tenant: str, role: str, name: str | None = None) -> str:
        return mint(self.engine, tenant, role, name)[1]


@pytest.fixture(scope="session")
def stack(security_url, security_engine):
    """The five services, in this process, with UEBA_AUTH=tokens; one channel to each."""
    s = Stack(security_engine)
    for service in SERVICES:
        settings = settings_for(service, security_url, {**AUTH_ENV, **QUIET})
        server, port = create(service, settings, security_engine)
        server.start()
        s.servers.append(server)
        s.channels[service] = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield s
    for channel in s.channels.values():
        channel.close()
    for server in s.servers:
        server.stop(0).wait()
