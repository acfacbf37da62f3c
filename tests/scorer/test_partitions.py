"""event_scores day partitions: a run creates the days it writes, retention drops the old ones
and gives way to the runs using the table."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
from prometheus_client import REGISTRY

from services.scorer.maintenance import partition_upkeep
from services.scorer.window import whole_days_past_retention
from services.scorer.server import create_server
from services.scorer.settings import ScorerSettings
from tests.scorer.conftest import make_scorer
from tests.scorer.helpers import START, Activity
from ueba.db import create_db_engine, libpq_url
from ueba.store import partitions
from ueba.store.partitions import EVENT_SCORES, PartitionCache

TODAY = date(2026, 11, 20)
RETENTION = 90
CUTOFF = TODAY - timedelta(days=RETENTION)  # the oldest day kept


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), autocommit=True)


def three_users_at_work(url: str) -> None:
    act = Activity()
    for i in range(3):
        act.office_month(f"user{i}", 10)
    act.write(url)


def placed(url: str) -> dict[str, int]:
    """Rows per partition."""
    with connect(url) as conn:
        return dict(conn.execute("SELECT tableoid::regclass::text, count(*) FROM event_scores GROUP BY 1").fetchall())


def test_a_run_creates_the_partitions_of_the_days_it_scores(scratch_url):
    three_users_at_work(scratch_url)
    start = START + timedelta(days=7, hours=12)  # noon to noon: two days
    days = {start.date(), start.date() + timedelta(days=1)}
    with connect(scratch_url) as conn:
        assert not days & partitions.existing_partitions(conn, EVENT_SCORES)
    scorer = make_scorer(scratch_url)
    try:
        run = scorer.run("default", start, start + timedelta(days=1))
    finally:
        scorer.engine.dispose()
    assert run.status == "succeeded", run.error
    rows = placed(scratch_url)
    assert sorted(rows) == [EVENT_SCORES.name(day) for day in sorted(days)]
    assert sum(rows.values()) == run.figures["event_scores"] > 0


def test_a_run_recreates_a_day_dropped_behind_its_cache(scratch_url):
    three_users_at_work(scratch_url)
    day = START + timedelta(days=7)
    scorer = make_scorer(scratch_url)
    try:
        first = scorer.run("default", day, day + timedelta(days=1))
        # Another replica's retention drops the day; this process still believes in it.
        with connect(scratch_url) as conn:
            partitions.drop_before(conn, day.date() + timedelta(days=1), EVENT_SCORES)
        assert not scorer.partitions.missing({day.date()})
        second = scorer.run("default", day, day + timedelta(days=1))
    finally:
        scorer.engine.dispose()
    assert first.status == "succeeded", first.error
    assert second.status == "succeeded", second.error
    assert placed(scratch_url) == {EVENT_SCORES.name(day.date()): first.figures["event_scores"]}
    assert second.figures["event_scores"] == first.figures["event_scores"]


def test_a_run_scores_whole_days_where_their_scores_may_be_gone():
    def at(day: date, hour: int = 0) -> datetime:
        return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc)

    def widened(start: datetime, end: datetime) -> tuple[datetime, datetime]:
        return whole_days_past_retention(start, end, RETENTION, TODAY)

    old = CUTOFF - timedelta(days=10)
    assert widened(at(old, 6), at(old, 9)) == (at(old), at(old + timedelta(days=1)))
    # A day of margin: the retention worker may already count tomorrow.
    assert widened(at(CUTOFF, 6), at(CUTOFF, 9)) == (at(CUTOFF), at(CUTOFF + timedelta(days=1)))
    kept = CUTOFF + timedelta(days=1)
    assert widened(at(kept, 6), at(kept, 9)) == (at(kept, 6), at(kept, 9))
    yesterday = TODAY - timedelta(days=1)
    assert widened(at(yesterday, 6), at(TODAY, 6)) == (at(yesterday, 6), at(TODAY, 6))  # a scheduled run's day
    assert widened(at(old, 6), at(kept, 6)) == (at(old), at(kept, 6))
    assert whole_days_past_retention(at(old, 6), at(old, 9), 0, TODAY) == (at(old, 6), at(old, 9))


def test_a_run_over_part_of_an_old_day_scores_all_of_it(scratch_url):
    three_users_at_work(scratch_url)  # in March 2026: long past a retention of 2 days
    day = START + timedelta(days=7)
    scorer = make_scorer(scratch_url, UEBA_SCORE_RETENTION_DAYS="2")
    try:
        run = scorer.run("default", day + timedelta(hours=12), day + timedelta(hours=14))
    finally:
        scorer.engine.dispose()
    assert run.status == "succeeded", run.error
    assert (run.start, run.end) == (day, day + timedelta(days=1))
    with connect(scratch_url) as conn:
        hours = {h for (h,) in conn.execute("SELECT DISTINCT extract(hour FROM hour AT TIME ZONE 'UTC') FROM event_scores")}
    assert hours == set(range(9, 17))  # the whole working day, not 12:00 and 13:00 alone


def retention(days: int) -> ScorerSettings:
    return ScorerSettings.from_env({"UEBA_SCORE_RETENTION_DAYS": str(days)})


@pytest.fixture
def engine(scratch_url):
    eng = create_db_engine(scratch_url, pool_size=1)
    yield eng
    eng.dispose()


def dropped_count() -> float:
    return REGISTRY.get_sample_value("ueba_partitions_dropped_total", {"table": "event_scores"}) or 0.0

def test_retention_drops_the_days_past_it_and_keeps_the_rest(scratch_url, engine):
    old = [CUTOFF - timedelta(days=100), CUTOFF - timedelta(days=1)]
    kept = [CUTOFF, TODAY - timedelta(days=1)]
    with connect(scratch_url) as conn:
        partitions.ensure_partitions(conn, set(old + kept), EVENT_SCORES)
        partitions.ensure_partitions(conn, set(old))  # events' days: not the scorer's to drop
        for day in old + kept:
            conn.execute("""INSERT INTO event_scores (tenant, user_name, hour, model, score, features, run_id)
                            VALUES ('default', 'u', %s::date + interval '23 hours', 'm', 1, '[]', gen_random_uuid())""",
                         (day,))
    assert partition_upkeep(retention(0), engine, PartitionCache(EVENT_SCORES), lambda: TODAY).run_once() == []
    assert placed(scratch_url).keys() == {EVENT_SCORES.name(day) for day in old + kept}  # 0: keep forever

    cache = PartitionCache(EVENT_SCORES)
    cache.add(old + kept)
    counted = dropped_count()
    dropped = partition_upkeep(retention(RETENTION), engine, cache, lambda: TODAY).run_once()
    assert dropped == [EVENT_SCORES.name(day) for day in old]
    assert dropped_count() == counted + len(old)
    assert placed(scratch_url).keys() == {EVENT_SCORES.name(day) for day in kept}
    with connect(scratch_url) as conn:
        have = partitions.existing_partitions(conn, EVENT_SCORES)
        assert set(old).isdisjoint(have)
        assert set(kept) | {TODAY, TODAY + timedelta(days=1)} <= have  # and tomorrow's, ahead
        assert set(old) <= partitions.existing_partitions(conn)
    assert cache.missing(old + kept) == set(old + kept)  # the runs look again


def test_retention_gives_way_to_a_run_using_the_table(scratch_url, engine):
    old = CUTOFF - timedelta(days=1)
    with connect(scratch_url) as conn:
        partitions.ensure_partitions(conn, {old, TODAY, TODAY + timedelta(days=1)}, EVENT_SCORES)
    worker = partition_upkeep(retention(RETENTION), engine, PartitionCache(EVENT_SCORES), lambda: TODAY)
    worker.lock_timeout = "100ms"
    outcome: dict = {}
    with psycopg.connect(libpq_url(scratch_url)) as run:
        run.execute("SELECT count(*) FROM event_scores")  # as a scoring run's open transaction does
        upkeep = threading.Thread(target=lambda: outcome.update(dropped=worker.run_once()))
        upkeep.start()
        upkeep.join(30)
        assert not upkeep.is_alive(), "the drop waited for the run (and held every reader behind it)"
    assert outcome["dropped"] == [] and worker.busy
    assert worker.next_wait(failed=False) == worker.retry_seconds
    assert worker.run_once() == [EVENT_SCORES.name(old)]  # the run has ended
    assert not worker.busy and worker.next_wait(failed=False) == worker.interval


def test_the_service_keeps_the_partitions_from_its_start(scratch_url, engine):
    with connect(scratch_url) as conn:
        partitions.drop_before(conn, date.max, EVENT_SCORES)  # the migration's today and tomorrow
    settings = ScorerSettings.from_env({"DATABASE_URL": scratch_url, "UEBA_LISTEN": "127.0.0.1:0",
                                        "UEBA_METRICS_PORT": "-1", "UEBA_SCORING_SCHEDULE": "off",
                                        "UEBA_ANOMALY_LOG": "off"})
    server, _ = create_server(settings, engine)
    today = partitions.utc_today()
    server.start()
    try:
        deadline = time.monotonic() + 30
        with connect(scratch_url) as conn:
            while {today, today + timedelta(days=1)} - partitions.existing_partitions(conn, EVENT_SCORES):
                assert time.monotonic() < deadline, "no partition upkeep at start"
                time.sleep(0.05)
    finally:
        server.stop(0).wait()
