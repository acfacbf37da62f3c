"""A private Postgres server for local runs and tests, from the pgserver package.

Used only when DATABASE_URL is unset. The server lives in a data folder of the
project, needs no root and no Docker, and is stopped by whoever started it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir).resolve() / "pg"
        self._server = None

    def start(self) -> str:
        """Starts (or joins) the server and returns a postgresql:// URL for it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not os.environ.get("XDG_RUNTIME_DIR"):
            # pgserver keeps its lock in the runtime directory; without one platformdirs warns on
            # every command. A private one beside the data serves every process of this project.
            runtime = self.data_dir.parent / "runtime"
            runtime.mkdir(mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        import pgserver  # imported late: production images never start it

        # "stop" leaves the data in place and stops the server on cleanup.
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        url = self._server.get_uri()
        log.info("embedded postgres ready", extra={"data_dir": str(self.data_dir)})
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
