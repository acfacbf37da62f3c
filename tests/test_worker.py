"""The background-worker lifecycle every service's periodic work shares."""

from __future__ import annotations

import threading
import time

from ueba.worker import PeriodicWorker


class Rounds(PeriodicWorker):
    thread_name = "test-rounds"

    def __init__(self, interval: float, run_at_start: bool, fail_first: int = 0):
        super().__init__()
        self.interval = interval
        self.run_at_start = run_at_start
        self.fail_first = fail_first
        self.calls = 0
        self.waits: list[tuple[bool, float]] = []
        self.called = threading.Event()

    def run_once(self) -> None:
        self.calls += 1
        self.called.set()
        if self.calls <= self.fail_first:
            raise RuntimeError("store down")

    def next_wait(self, failed: bool) -> float:
        wait = 0.01 if failed else self.interval
        self.waits.append((failed, wait))
        return wait


def test_runs_at_start_and_stops_within_a_wait():
    w = Rounds(interval=3600, run_at_start=True)
    w.start()
    assert w.running
    assert w.called.wait(5), "run_at_start: the first round comes without waiting an interval"
    started = time.monotonic()
    w.stop()
    assert time.monotonic() - started < 5, "stop() must end the loop during its hour-long wait"
    assert not w.running
    assert w.calls == 1


def test_first_round_after_an_interval_without_run_at_start():
    w = Rounds(interval=3600, run_at_start=False)
    w.start()
    assert not w.called.wait(0.3)
    w.stop()
    assert w.calls == 0


def test_a_failing_round_is_logged_and_the_loop_goes_on(caplog):
    w = Rounds(interval=3600, run_at_start=True, fail_first=2)
    w.start()
    deadline = time.monotonic() + 5
    while w.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert w.calls == 3
    assert [f for f, _ in w.waits] == [True, True, False]
    failures = [r for r in caplog.records if r.getMessage() == "background work failed"]
    assert len(failures) == 2 and all(r.worker == "test-rounds" and r.exc_info for r in failures)


def test_restart_after_stop():
    w = Rounds(interval=3600, run_at_start=True)
    w.start()
    assert w.called.wait(5)
    w.stop()
    w.called.clear()
    w.start()
    assert w.called.wait(5), "a stopped worker starts again (the stop event is cleared)"
    w.stop()
    assert w.calls == 2
