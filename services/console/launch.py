"""Starts the console next to running services: the hook `ueba up` and the tests call."""

from __future__ import annotations

from pathlib import Path

from ueba.launcher import ServiceProcess, start_service

DEFAULT_PORT = 8080


def start_console(
    services: dict[str, str],
    listen: str = f"127.0.0.1:{DEFAULT_PORT}",
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> ServiceProcess:
    """`python -m services.console` on `listen`, calling `services` ({"query": "host:port", ...})."""
    full_env = {
        "UEBA_LISTEN": listen,
        "UEBA_METRICS_PORT": "-1",
        **{f"UEBA_CONSOLE_{name.upper()}_ADDRESS": address for name, address in services.items()
           if name in ("query", "profiles", "scorer")},
        **(env or {}),
    }
    return start_service("console", full_env, log_path=log_path)


def console_url(console: ServiceProcess, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{console.port}/"
