"""Background work of a service: one daemon thread, started and stopped with the server.

`ueba.server.ServiceServer(background=...)` calls start() once the service
serves and stop() when it drains, so every worker has the same lifecycle: the
loop waits on `stopping` (never sleeps), so that stop() ends it within one wait.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class BackgroundWorker:
    """A thread running `run()` until stop(); subclasses wait on `self.stopping` between rounds."""

    thread_name = "background"
    join_seconds = 10.0

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self.stopping.clear()
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_seconds)
            self._thread = None

    def run(self) -> None:
        raise NotImplementedError


class PeriodicWorker(BackgroundWorker):
    """Calls `run_once()` every `interval` seconds (at once on start with `run_at_start`).

    A failing round is logged and the loop goes on: background work meets a
    database that is down for a while, and the next round retries.
    `next_wait` decides the pause after each round.
    """

    interval = 60.0
    run_at_start = False

    def run(self) -> None:
        wait = 0.0 if self.run_at_start else self.interval
        while not self.stopping.wait(wait):
            failed = False
            try:
                self.run_once()
            except Exception:
                log.exception("background work failed", extra={"worker": self.thread_name})
                failed = True
            wait = self.next_wait(failed)

    def run_once(self) -> None:
        raise NotImplementedError

    def next_wait(self, failed: bool) -> float:
        return self.interval
