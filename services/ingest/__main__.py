"""`python -m services.ingest`: the ingest service as a container runs it."""

from __future__ import annotations

import sys

from services.ingest.server import create_server
from services.ingest.settings import IngestSettings
from ueba.bootstrap import engine_for
from ueba.logs import configure_logging
from ueba.server import serve
from ueba.settings import SettingsError


def main() -> int:
    try:
        settings = IngestSettings.from_env()
    except SettingsError as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 2
    configure_logging("ingest", settings.log_level)
    engine = engine_for(settings, "ingest")
    if settings.auto_migrate:
        # Production migrates with `ueba migrate` (the chart's Job); this is for local runs.
        from ueba.store.migrate import upgrade

        upgrade(engine.url.render_as_string(hide_password=False))
    server, port = create_server(settings, engine)
    serve("ingest", settings, server, port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
