"""Prepared batches written by a few writer threads, several batches to a transaction.

`GroupCommit.write(tenant, batch)` blocks until the transaction holding the batch has
committed and returns how many of its events were new, or raises what writing that batch
alone raised. Why this shape: services/ingest/README.md, "Performance notes".
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

from services.ingest.prepare import PreparedBatch
from services.ingest.store import EventStore


class _Queued:
    def __init__(self, tenant: str, batch: PreparedBatch):
        self.tenant = tenant
        self.batch = batch
        self.done: Future[int] = Future()


class GroupCommit:
    def __init__(self, store: EventStore, writers: int, max_rows: int):
        self.store = store
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"ingest-writer-{i}", daemon=True) for i in range(writers)
        ]
        for thread in self._threads:
            thread.start()

    def write(self, tenant: str, batch: PreparedBatch) -> int:
        if not batch.rows:
            return 0
        queued = _Queued(tenant, batch)
        self._queue.put(queued)
        return queued.done.result()

    @property
    def waiting(self) -> int:
        """Batches prepared and waiting for a writer."""
        return self._queue.qsize()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            group = [first]
            rows = len(first.batch.rows)
            # Whatever else is already waiting joins this transaction, up to max_rows: under
            # load the groups grow by themselves, and a lone batch never waits for company.
            while rows < self.max_rows:
                try:
                    queued = self._queue.get_nowait()
                except queue.Empty:
                    break
                if queued is None:
                    self._queue.put(None)  # the stop signal is this thread's after the group
                    break
                group.append(queued)
                rows += len(queued.batch.rows)
            self._write(group)

    def _write(self, group: list[_Queued]) -> None:
        try:
            outcomes = self.store.write_group([(q.tenant, q.batch) for q in group])
        except BaseException as exc:  # no connection at all, say: every caller hears of it, none hangs
            outcomes = [exc] * len(group)
        for queued, outcome in zip(group, outcomes):
            if isinstance(outcome, BaseException):
                queued.done.set_exception(outcome)
            else:
                queued.done.set_result(outcome)
