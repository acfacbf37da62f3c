"""`python -m services.NAME`: the one entry point every service's __main__ calls."""

from __future__ import annotations

import gc
import sys
from typing import Callable

from sqlalchemy import Engine

from ueba.bootstrap import engine_for
from ueba.leases import LeaseConfigError
from ueba.logs import configure_logging
from ueba.server import ServiceServer, serve
from ueba.settings import BaseSettings, SettingsError

CreateServer = Callable[[BaseSettings, Engine], tuple[ServiceServer, int]]


def run_service(
    name: str,
    settings_class: type[BaseSettings],
    create_server: CreateServer,
    supervisor: Callable[[BaseSettings], int | None] | None = None,
) -> int:
    """Reads settings, builds the service and serves it until SIGTERM; returns the exit code.

    A configuration error exits with 2 and one line naming the variable.
    `supervisor`, when it returns an exit code, ran the service as several
    processes of its own (query's UEBA_QUERY_WORKERS) instead of one server here.
    """
    try:
        settings = settings_class.from_env()
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    configure_logging(name, settings.log_level)
    if supervisor is not None:
        code = supervisor(settings)
        if code is not None:
            return code
    engine = engine_for(settings, name)
    if settings.auto_migrate:
        # Production migrates with `ueba migrate` (the chart's Job); this is for local runs.
        from ueba.store.migrate import upgrade

        upgrade(engine.url.render_as_string(hide_password=False))
    try:
        server, port = create_server(settings, engine)
    except LeaseConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    # Everything built so far lives as long as the process: keep it out of the
    # collector's full passes, which otherwise stop every thread (GIL) for tens
    # of milliseconds now and then and show up as p99 latency.
    gc.freeze()
    serve(name, settings, server, port)
    engine.dispose()
    return 0
