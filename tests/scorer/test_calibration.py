"""Calibration on clean simulated activity: few ordinary user-hours reach 70."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from services.ingest import pipeline
from tests.scorer.conftest import make_scorer
from ueba import simulator
from ueba.db import create_db_engine, libpq_url


def test_clean_organisation_is_calibrated(scratch_url):
    from services.ingest.settings import IngestSettings

    config = simulator.SimulationConfig(users=40, days=21, seed=11, scenarios=False)
    sim = simulator.simulate(config)
    engine = create_db_engine(scratch_url, pool_size=2)
    ingest = pipeline.IngestPipeline(IngestSettings.from_env({"DATABASE_URL": scratch_url, "UEBA_MAX_PAST_DAYS": "0"}), engine)
    batch = []
    for event in sim.events():
        batch.append(event)
        if len(batch) == 5000:
            ingest.ingest("default", batch)
            batch = []
    if batch:
        ingest.ingest("default", batch)
    engine.dispose()

    scorer = make_scorer(scratch_url)
    start = config.start + timedelta(days=14)
    run = scorer.run("default", start, config.start + timedelta(days=config.days))
    scorer.engine.dispose()
    assert run.status == "succeeded", run.error
    with psycopg.connect(libpq_url(scratch_url)) as conn:
        hours, hot = conn.execute(
            """SELECT count(*), count(*) FILTER (WHERE top >= 70)
               FROM (SELECT user_name, hour, max(score) AS top FROM event_scores WHERE NOT learning
                     GROUP BY user_name, hour) h"""
        ).fetchone()
        days, hot_days = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE score >= 70) FROM user_scores WHERE NOT learning"
        ).fetchone()
    assert hours > 1000 and days > 150
    assert hot / hours <= 0.01, f"{hot} of {hours} clean user-hours reached 70"
    assert hot_days / days <= 0.03, f"{hot_days} of {days} clean user-days reached 70"
