"""Commit announcements: heard only at commit, and a listener that survives its connection."""

from __future__ import annotations

import logging
import threading
import time

from ueba.db import create_db_engine, with_database
from ueba.store.commits import CommitListener, announce_commit


def test_an_announcement_is_heard_at_commit_and_not_after_a_rollback(engine):
    wake = threading.Event()
    listener = CommitListener(engine, wake, check_seconds=0.1)
    listener.start()
    try:
        assert listener.connected.wait(10)
        wake.clear()
        raw = engine.raw_connection()
        try:
            with raw.driver_connection.cursor() as cur:
                announce_commit(cur)
                time.sleep(0.3)
                assert not wake.is_set()  # not before the commit
            raw.driver_connection.rollback()
            assert not wake.wait(0.5)
            with raw.driver_connection.cursor() as cur:
                announce_commit(cur)
            raw.driver_connection.commit()
            assert wake.wait(5)
        finally:
            raw.close()
    finally:
        listener.stop()


def test_a_listener_that_cannot_connect_keeps_trying_and_warns_once(database_url, caplog):
    missing = create_db_engine(with_database(database_url, "ueba_no_such_database"), pool_size=1)
    listener = CommitListener(missing, threading.Event(), retry_seconds=0.05)
    with caplog.at_level(logging.DEBUG, logger="ueba.store.commits"):
        listener.start()
        time.sleep(1.0)
        listener.stop()
    records = [r for r in caplog.records if r.name == "ueba.store.commits"]
    assert len(records) >= 3  # it kept trying
    assert [r.levelno for r in records].count(logging.WARNING) == 1
    assert not listener.connected.is_set()
    missing.dispose()

