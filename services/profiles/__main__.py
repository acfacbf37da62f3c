"""`python -m services.profiles`: the profiles service (API and continuous evaluator)."""

from __future__ import annotations

import sys

from services.profiles.server import create_server
from services.profiles.settings import ProfilesSettings
from ueba.bootstrap import engine_for
from ueba.logs import configure_logging
from ueba.server import serve
from ueba.settings import SettingsError


def main() -> int:
    try:
        settings = ProfilesSettings.from_env()
    except SettingsError as exc:
        print(f"profiles: {exc}", file=sys.stderr)
        return 2
    configure_logging("profiles", settings.log_level)
    engine = engine_for(settings, "profiles")
    server, port = create_server(settings, engine)
    serve("profiles", settings, server, port)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
