"""Fixtures of the scorer tests: a database with constructed activity, scored once per module."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from services.scorer.runs import RunResult, Scorer
from services.scorer.settings import ScorerSettings
from ueba.anomaly_log import AnomalySink
from ueba.store.databases import drop_database, new_database
from tests.scorer.helpers import START, Activity
from ueba.db import create_db_engine, libpq_url
from ueba.store.migrate import upgrade

SCORED_DAY = START + timedelta(days=28)  # a Monday, after four weeks of ordinary work


def make_scorer(url: str, sink_path: Path | None = None, **env: str) -> Scorer:
    settings = ScorerSettings.from_env({"DATABASE_URL": url, "UEBA_SCORING_SCHEDULE": "off", **env})
    engine = create_db_engine(url, pool_size=2)
    return Scorer(engine, settings, AnomalySink(str(sink_path) if sink_path else "off"))


@pytest.fixture
def scratch_url(server_url):
    name, url = new_database(server_url, "ueba_scorer")
    upgrade(url)
    yield url
    drop_database(server_url, name)


@dataclass
class Scenario:
    url: str
    scorer: Scorer
    run: RunResult
    sink: Path

    def query(self, sql: str, *params):
        with psycopg.connect(libpq_url(self.url)) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            return conn.execute(sql, params).fetchall()


def constructed_activity() -> Activity:
    act = Activity()
    for i in range(12):
        act.office_month(f"user{i}", 28, department="sales" if i < 6 else None)
    for i in range(12):
        act.workday(f"user{i}", SCORED_DAY)
    day = SCORED_DAY
    # user0: brute force from a never-seen machine
    for k in range(25):
        act.event("user0", day + timedelta(hours=14, minutes=k), "logon", outcome="failure", source_host="evil-box",
                  destination_host="dc1")
    # user1: in Sydney 35 minutes after London
    act.event("user1", day + timedelta(hours=15, minutes=40), "logon", city="sydney", source_ip="203.0.113.9")
    # user2: thirty hosts it never touched
    for k in range(30):
        act.event("user2", day + timedelta(hours=11, minutes=k), "host_access", source_host="user2-pc",
                  destination_host=f"srv-{k:02d}")
    # user3: a bulk download
    act.event("user3", day + timedelta(hours=13, minutes=40), "file_download", application="sharepoint",
              bytes=4_000_000_000, file_count=400)
    # user4: at work at 03:00
    for k in range(4):
        act.event("user4", day + timedelta(hours=3, minutes=10 * k), "host_access", source_host="user4-pc",
                  destination_host="fs1")
    # user5: uploads to an application it never used
    act.event("user5", day + timedelta(hours=12, minutes=15), "file_upload", application="anonfiles",
              bytes=3_000_000_000, file_count=30)
    # user6: ignored, whatever it does
    for k in range(25):
        act.event("user6", day + timedelta(hours=14, minutes=k), "logon", outcome="failure", source_host="evil-box")
    # newbie: three days of history, then a brute force
    for d in (25, 26, 27):
        act.workday("newbie", START + timedelta(days=d))
    act.workday("newbie", day)
    for k in range(25):
        act.event("newbie", day + timedelta(hours=14, minutes=k), "logon", outcome="failure", source_host="evil-box")
    return act


@pytest.fixture(scope="module")
def scenario(server_url, tmp_path_factory) -> Scenario:
    name, url = new_database(server_url, "ueba_scorer_scn")
    try:
        upgrade(url)
        constructed_activity().write(url)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("INSERT INTO ignored_users (tenant, user_name, reason) VALUES ('default', 'user6', 'test account')")
        sink = tmp_path_factory.mktemp("sink") / "anomaly.log"
        scorer = make_scorer(url, sink)
        run = scorer.run("default", SCORED_DAY, SCORED_DAY + timedelta(days=1))
        assert run.status == "succeeded", run.error
        yield Scenario(url, scorer, run, sink)
        scorer.engine.dispose()
    finally:
        drop_database(server_url, name)
