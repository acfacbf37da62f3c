"""Where a user is, as the hourly features read it: failed logons place whoever tried the account."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from services.scorer.cursor import aggregate
from tests.scorer.helpers import START, Activity
from ueba.db import create_db_engine, libpq_url


def test_a_failed_logon_from_afar_is_no_trip_of_the_user(scratch_url):
    act = Activity()
    act.office_month("ann", 7)
    day = START + timedelta(days=7)
    act.workday("ann", day, hours=range(9, 12))
    # Someone in Moscow tries ann's password at 10:40, between two of her London hours.
    act.event("ann", day + timedelta(hours=10, minutes=40), "logon", outcome="failure", source_ip="203.0.113.7",
              city="moscow")
    # At 11:40 ann herself signs in from Sydney.
    act.event("ann", day + timedelta(hours=11, minutes=40), "logon", source_ip="198.51.100.4", city="sydney")
    act.write(scratch_url)
    engine = create_db_engine(scratch_url, pool_size=2)
    try:
        with engine.connect() as lock_conn:
            aggregate(engine, lock_conn, "default", lambda stage: None)
    finally:
        engine.dispose()
    with psycopg.connect(libpq_url(scratch_url)) as conn:
        located = dict(conn.execute(
            """SELECT extract(hour FROM hour)::int, features FROM user_hour_features
               WHERE user_name = 'ann' AND model = 'origin_location' AND hour >= %s""", (day,)).fetchall())
        countries = {r[0] for r in conn.execute(
            "SELECT entity FROM entity_seen WHERE user_name = 'ann' AND entity_type = 'country'")}
        origins = {r[0] for r in conn.execute(
            "SELECT entity FROM entity_seen WHERE user_name = 'ann' AND entity_type = 'source_ip'")}
        failing, attempts = (conn.execute(
            """SELECT features FROM user_hour_features WHERE user_name = 'ann' AND model = %s AND hour = %s""",
            (model, day + timedelta(hours=10))).fetchone()[0] for model in ("origin_host", "authentication"))
    # The failure's hour is still in London with no move; her own trip is.
    assert located[10]["distinct_countries"] == 1 and located[10]["max_distance_km"] < 1
    assert located[11]["new_countries"] == 1 and located[11]["max_distance_km"] > 10_000
    assert countries == {"GB", "AU"}
    # Where the attempt came from is still an origin of the account, and an attempt from a country
    # the account never acted from is evidence about its authentication.
    assert "203.0.113.7" in origins and failing["new_source_ips"] == 1
    assert attempts["failures"] == 1 and attempts["failures_from_new_countries"] == 1
