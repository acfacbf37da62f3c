"""`python -m services.console`: serves the console's pages and HTTP/JSON API until SIGTERM."""

from __future__ import annotations

import sys

from services.console.server import create_server
from services.console.settings import ConsoleSettings
from ueba.logs import configure_logging
from ueba.server import start_metrics
from ueba.settings import SettingsError


def main() -> int:
    try:
        settings = ConsoleSettings.from_env()
    except SettingsError as exc:
        print(f"console: {exc}", file=sys.stderr)
        return 2
    configure_logging("console", settings.log_level)
    server, sock, _port = create_server(settings)
    server.metrics_port = start_metrics(settings)
    server.run(sockets=[sock])  # uvicorn stops on SIGTERM/SIGINT, finishing requests in flight
    return 0


if __name__ == "__main__":
    sys.exit(main())
