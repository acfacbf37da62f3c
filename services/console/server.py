"""The console's composition root: settings, gRPC backends, the HTTP app, the HTTP server."""

from __future__ import annotations

import dataclasses
import socket
import ssl

import uvicorn

from services.console.api import create_app
from services.console.gateway import Backends
from services.console.settings import ConsoleSettings
from ueba.client.channel import ChannelConfig


class ReadyServer(uvicorn.Server):
    """Prints the READY line every service prints (ueba/launcher.py waits for it) once it accepts."""

    name = "console"
    metrics_port: int | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            port = sockets[0].getsockname()[1] if sockets else self.config.port
            print(f"READY {self.name} port={port} metrics_port={self.metrics_port}", flush=True)


def create_server(settings: ConsoleSettings) -> tuple[ReadyServer, socket.socket, int]:
    """The HTTP server with its listening socket bound (port 0 picks one) and the port."""
    # The services' TLS client settings (UEBA_TLS, UEBA_TLS_CA_FILE, ...), never a token of
    # the console's own: each call carries its caller's.
    # CaseService is served by the query process on its port (services/query/README.md).
    backends = Backends(
        {"query": settings.query_address, "profiles": settings.profiles_address, "scorer": settings.scorer_address,
         "cases": settings.query_address},
        dataclasses.replace(ChannelConfig.from_env(), token=None),
        settings.call_timeout_seconds,
    )
    app = create_app(backends, settings.auth, settings.cors_origins)
    sock = _bind(settings.listen)
    config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False,
                            timeout_graceful_shutdown=settings.drain_seconds, **_tls(settings))
    return ReadyServer(config), sock, sock.getsockname()[1]


def _bind(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(256)
    sock.set_inheritable(True)
    return sock


def _tls(settings: ConsoleSettings) -> dict:
    if not settings.tls_cert_file:
        return {}
    options = {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file}
    if settings.tls_client_ca_file:
        options["ssl_ca_certs"] = settings.tls_client_ca_file
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED if settings.tls_require_client_cert else ssl.CERT_OPTIONAL
    return options
