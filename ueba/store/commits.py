"""Commit notifications: writers of `events` announce their commits, tailing readers wake on them.

The notification only says "look now": readers still find the new rows by
their own commit-order cursors, so a notification lost (a listener
reconnecting, a writer that does not announce) only costs the reader's
fallback poll interval, never an event.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from sqlalchemy import Engine

log = logging.getLogger(__name__)

CHANNEL = "ueba_events_committed"
# Postgres delivers a notification only when the transaction that sent it commits, and folds
# repeats within one transaction into one; an empty payload keeps the shared queue small.
_ANNOUNCE = f"NOTIFY {CHANNEL}"
_LISTEN = f"LISTEN {CHANNEL}"


def announce_commit(cur: psycopg.Cursor) -> None:
    """Within the writer's transaction: listeners hear of it at commit, and not at all on rollback."""
    cur.execute(_ANNOUNCE)


class CommitListener:
    """A thread that sets `wake` on every announced commit, on its own connection.

    It sets `wake` too whenever it (re)connects: announcements sent while it
    was away are lost, and the reader should look rather than wait for its poll.
    """

    def __init__(self, engine: Engine, wake: threading.Event, *, check_seconds: float = 1.0, retry_seconds: float = 1.0):
        self.engine = engine
        self.wake = wake
        self.check_seconds = check_seconds  # how soon stop() is noticed while no announcement comes
        self.retry_seconds = retry_seconds
        self.connected = threading.Event()
        self.backend_pid: int | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="commit-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.check_seconds + 5)
            self._thread = None

    def _run(self) -> None:
        warned = False  # once per outage: a database down for minutes would log every retry
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as exc:  # psycopg's errors, or SQLAlchemy's wrapping of a failed connect
                if not self._stopping.is_set():
                    warned = warned and not self.connected.is_set()  # a new outage after a connection
                    (log.debug if warned else log.warning)(
                        "commit listener disconnected; readers fall back to polling", extra={"reason": str(exc)}
                    )
                    warned = True
            finally:
                self.connected.clear()
                self.backend_pid = None
            self._stopping.wait(self.retry_seconds)

    def _listen(self) -> None:
        raw = self.engine.raw_connection()
        conn: psycopg.Connection = raw.driver_connection
        raw.detach()  # held for the listener's life: not the pool's to hand out or recycle
        try:
            conn.rollback()
            conn.autocommit = True
            conn.execute(_LISTEN)
            self.backend_pid = conn.info.backend_pid
            self.connected.set()
            self.wake.set()
            while not self._stopping.is_set():
                for _ in conn.notifies(timeout=self.check_seconds):
                    self.wake.set()
        finally:
            conn.close()
