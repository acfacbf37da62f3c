"""`python -m services.scorer`: the scorer service as a container runs it."""

from __future__ import annotations

import sys

from services.scorer.server import create_server
from services.scorer.settings import ScorerSettings
from ueba.bootstrap import engine_for
from ueba.leases import LeaseConfigError
from ueba.logs import configure_logging
from ueba.server import serve
from ueba.settings import SettingsError


def main() -> int:
    try:
        settings = ScorerSettings.from_env()
    except SettingsError as exc:
        print(f"scorer: {exc}", file=sys.stderr)
        return 2
    configure_logging("scorer", settings.log_level)
    engine = engine_for(settings, "scorer")
    try:
        server, port = create_server(settings, engine)
    except LeaseConfigError as exc:
        print(f"scorer: {exc}", file=sys.stderr)
        return 2
    serve("scorer", settings, server, port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
