"""The metrics port listens where the service does: a loopback service keeps its metrics local."""

from __future__ import annotations

import socket

import pytest

from ueba.server import metrics_host
from ueba.settings import BaseSettings

pytestmark = pytest.mark.e2e


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_metrics_listen_on_the_services_host_by_default(database_url, service_processes):
    ingest = service_processes.start("ingest", {"DATABASE_URL": database_url, "UEBA_LISTEN": "127.0.0.1:0",
                                                "UEBA_METRICS_PORT": "0"})
    assert ingest.metrics_port
    assert reachable("127.0.0.1", ingest.metrics_port)
    # Another loopback address reaches a socket bound to 0.0.0.0, not one bound to 127.0.0.1.
    assert not reachable("127.0.0.2", ingest.metrics_port)


@pytest.mark.parametrize("listen, explicit, host", [
    ("127.0.0.1:50051", "", "127.0.0.1"),
    ("0.0.0.0:50051", "", "0.0.0.0"),
    ("[::1]:50051", "", "::1"),
    ("127.0.0.1:50051", "0.0.0.0", "0.0.0.0"),
])
def test_metrics_host_follows_the_listen_address_unless_set(listen, explicit, host):
    settings = BaseSettings.from_env({}, listen=listen, metrics_host=explicit, plaintext=True)
    assert metrics_host(settings) == host
