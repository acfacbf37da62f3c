"""Migrated databases for tests, made fast: cloned from one migrated once per session, dropped
in the background.

Running every migration takes about two seconds on a busy machine and a clone (CREATE DATABASE
... TEMPLATE) well under one; DROP DATABASE waits for a checkpoint, which on a server that other
work keeps writing to takes seconds, so drops go to a thread and overlap the next tests.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

from ueba.store.databases import drop_database, new_database
from ueba.store.migrate import upgrade


class MigratedDatabases:
    def __init__(self, server_url: str):
        self.server_url = server_url
        self._template: str | None = None
        self._lock = threading.Lock()
        self._drops: queue.Queue[str | None] = queue.Queue()
        self._failed: list[BaseException] = []
        self._dropper = threading.Thread(target=self._drop_queued, name="database-dropper", daemon=True)
        self._dropper.start()

    def new(self, prefix: str) -> tuple[str, str]:
        """A database at the migrations' head that no other test uses: (name, URL)."""
        with self._lock:
            if self._template is None:
                name, url = new_database(self.server_url, "ueba_template")
                upgrade(url)  # closes its connections: a template must have none when it is cloned
                self._template = name
            return new_database(self.server_url, prefix, self._template)

    def drop(self, name: str) -> None:
        """Drops the database soon, in the background (its connections are ended)."""
        self._drops.put(name)

    def close(self) -> None:
        """Waits for the queued drops, drops the template; raises the first drop that failed."""
        self._drops.put(None)
        self._dropper.join()
        if self._template is not None:
            drop_database(self.server_url, self._template)
        if self._failed:
            raise self._failed[0]

    def _drop_queued(self) -> None:
        # Drops waiting together are made at once: they wait for the same checkpoint.
        with ThreadPoolExecutor(8, thread_name_prefix="database-drop") as pool:
            closing = False
            while not closing:
                names = [self._drops.get()]
                while not self._drops.empty():
                    names.append(self._drops.get())
                closing = None in names
                for done in [pool.submit(self._drop, name) for name in names if name is not None]:
                    done.result()

    def _drop(self, name: str) -> None:
        try:
            drop_database(self.server_url, name)
        except Exception as exc:  # reported by close(), at the end of the session
            self._failed.append(exc)
