"""`python -m services.query`: runs the query service until SIGTERM.

With UEBA_QUERY_WORKERS above 1 this process supervises that many server
processes sharing the port (services/query/workers.py).
"""

from __future__ import annotations

import gc
import sys

from services.query.server import create_server
from services.query.settings import QuerySettings
from ueba.bootstrap import engine_for
from ueba.logs import configure_logging
from ueba.server import serve
from ueba.settings import SettingsError


def main() -> int:
    try:
        settings = QuerySettings.from_env()
    except SettingsError as exc:
        print(f"query: {exc}", file=sys.stderr)
        return 2
    configure_logging("query", settings.log_level)
    if settings.workers > 1:
        from services.query.workers import supervise

        return supervise(settings)
    engine = engine_for(settings, "query")
    server, port = create_server(settings, engine)
    # Everything imported and built so far lives as long as the process: keep it
    # out of the collector's full passes, which otherwise stop every thread (GIL)
    # for tens of milliseconds now and then and show up as p99 latency.
    gc.freeze()
    serve("query", settings, server, port)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
