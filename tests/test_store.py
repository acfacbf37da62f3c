"""The migrated store matches the table definitions, and day partitions behave."""

import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ueba.db import libpq_url
from ueba.store import partitions
from ueba.store.migrate import downgrade, upgrade
from ueba.store.partitions import EVENT_SCORES
from ueba.store.schema import DESCRIPTION_TRIGRAM_INDEX, OPTIONAL_INDEXES, TENANT_INDEPENDENT, metadata


def _is_partition(change) -> bool:
    kind, obj = change[0], change[1]
    table = obj if kind == "remove_table" else getattr(obj, "table", None)
    return (kind in ("remove_table", "remove_index") and table is not None
            and any(t.day_of(table.name) for t in partitions.TABLES))


def _is_optional(change) -> bool:
    return change[0] == "remove_index" and change[1].name in OPTIONAL_INDEXES


def test_migrations_match_table_definitions(engine, pg):
    for table in partitions.TABLES:  # partitions and their indexes are not drift
        partitions.ensure_partitions(pg, {date(2026, 2, 1)}, table)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # Partitions are created at run time, not by migrations; optional indexes only where the server can.
    diff = [d for d in diff if not _is_partition(d) and not _is_optional(d)]
    assert diff == []


def test_every_table_carries_tenant():
    for table in metadata.tables.values():
        assert ("tenant" in table.c) != (table.name in TENANT_INDEPENDENT), table.name


def test_partitions_are_created_once_and_dropped_by_retention(fresh_database_url):
    with psycopg.connect(libpq_url(fresh_database_url), autocommit=True) as conn:
        days = {date(2026, 1, 1), date(2026, 1, 2), date(2026, 3, 5)}
        partitions.ensure_partitions(conn, days)
        partitions.ensure_partitions(conn, days)  # a second writer finds them there
        assert partitions.existing_partitions(conn) == days
        dropped = partitions.drop_before(conn, date(2026, 1, 3))
        assert dropped == ["events_p20260101", "events_p20260102"]
        assert partitions.existing_partitions(conn) == {date(2026, 3, 5)}


def test_each_table_has_its_own_partitions(fresh_database_url):
    with psycopg.connect(libpq_url(fresh_database_url), autocommit=True) as conn:
        migrated = partitions.existing_partitions(conn, EVENT_SCORES)
        partitions.ensure_partitions(conn, {date(2026, 1, 1), date(2026, 1, 2)}, EVENT_SCORES)
        partitions.ensure_partitions(conn, {date(2026, 1, 1)})
        assert partitions.drop_before(conn, date(2026, 1, 2), EVENT_SCORES) == ["event_scores_p20260101"]
        assert partitions.existing_partitions(conn) == {date(2026, 1, 1)}  # events' own: untouched
        assert partitions.existing_partitions(conn, EVENT_SCORES) == migrated | {date(2026, 1, 2)}
        conn.execute("""INSERT INTO event_scores (tenant, user_name, hour, model, score, features, run_id)
                        VALUES ('t', 'u', '2026-01-02 23:00+00', 'm', 1, '[]', gen_random_uuid())""")
        assert conn.execute("SELECT tableoid::regclass::text FROM event_scores").fetchall() == [("event_scores_p20260102",)]


# --- migration 0010: event_scores partitioned by day ---

BEFORE_0010 = "0009_scorer_baselines"


@pytest.fixture
def url_before_0010(server_url):
    from ueba.store.databases import drop_database, new_database

    name, url = new_database(server_url, "ueba_mig")
    upgrade(url, BEFORE_0010)
    yield url
    drop_database(server_url, name)


def event_scores_state(url: str) -> dict:
    with psycopg.connect(libpq_url(url)) as conn:
        return {
            "kind": conn.execute("SELECT relkind FROM pg_class WHERE relname = 'event_scores'").fetchone()[0],
            "rows": conn.execute("SELECT tenant, user_name, hour, model, score, features, learning, run_id::text"
                                 " FROM event_scores ORDER BY 1, 2, 3, 4").fetchall(),
            "placed": conn.execute("SELECT DISTINCT tableoid::regclass::text, (hour AT TIME ZONE 'UTC')::date"
                                   " FROM event_scores ORDER BY 2").fetchall(),
            "indexes": conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'event_scores'"
                                    " ORDER BY 1").fetchall(),
            "partitions": partitions.existing_partitions(conn, EVENT_SCORES),
        }


def test_migration_0010_moves_event_scores_into_day_partitions_and_back(url_before_0010):
    url = url_before_0010
    # Hours on both sides of UTC midnight, two tenants, a gap of weeks.
    hours = [datetime(2026, 3, 1, 23, tzinfo=timezone.utc), datetime(2026, 3, 2, 0, tzinfo=timezone.utc),
             datetime(2026, 3, 2, 13, tzinfo=timezone.utc), datetime(2026, 4, 20, 5, tzinfo=timezone.utc)]
    rows = [(tenant, f"user{i}", hour, model, 10 + i, f'[{{"name": "f", "share": {i}}}]', i % 2 == 0, str(uuid.uuid4()))
            for tenant in ("a", "b") for i, hour in enumerate(hours) for model in ("login_time", "origin_host")]
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        with conn.cursor() as cur, cur.copy("COPY event_scores (tenant, user_name, hour, model, score, features, learning,"
                                            " run_id) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    heap = event_scores_state(url)
    assert heap["kind"] == "r" and len(heap["rows"]) == len(rows)

    upgrade(url)
    moved = event_scores_state(url)
    assert moved["kind"] == "p"
    assert moved["rows"] == heap["rows"]
    days = {date(2026, 3, 1), date(2026, 3, 2), date(2026, 4, 20)}
    assert moved["placed"] == [(EVENT_SCORES.name(day), day) for day in sorted(days)]
    today = partitions.utc_today()
    # And today's and tomorrow's, for the previous release's scorers during a rolling upgrade.
    assert moved["partitions"] == days | {today, today + timedelta(days=1)}
    assert [name for name, _ in moved["indexes"]] == ["ix_event_scores_tenant_hour", "pk_event_scores"]

    downgrade(url, BEFORE_0010)
    back = event_scores_state(url)
    assert back["kind"] == "r" and back["partitions"] == set()
    assert back["rows"] == heap["rows"]
    assert back["indexes"] == heap["indexes"]
    with psycopg.connect(libpq_url(url)) as conn:
        assert not conn.execute("SELECT relname FROM pg_class WHERE relname LIKE 'event\\_scores\\_%'").fetchall()

    upgrade(url)  # and forward again
    assert event_scores_state(url)["rows"] == heap["rows"]


# --- migration 0012: entities and incidents ---

BEFORE_0012 = "0011_scorer_baseline_buckets"


def test_migration_0012_charges_stored_anomalies_to_their_accounts_and_back(server_url):
    from ueba.store.databases import drop_database, new_database

    name, url = new_database(server_url, "ueba_mig")
    try:
        upgrade(url, BEFORE_0012)
        upgrade(url, "0007_query_speed")
        insert = """INSERT INTO anomalies (tenant, user_name, source, profile_id, profile_name, profile_kind, risk_score,
                    description, dimension, time, window_start, window_end, dedup_key)
                    VALUES ('t', %s, 'rule', 'p', 'p', 'failed_logins', 50, 'd', 'authentication',
                            now(), now(), now(), %s)"""
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute(insert, ("alice", "k1"))
        upgrade(url)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute(insert, ("bob", "k2"))  # a writer of the previous release names no entity
            rows = conn.execute("SELECT user_name, entity_type, entity, incident_id FROM anomalies ORDER BY 1").fetchall()
            assert rows == [("alice", "user", "alice", None), ("bob", "user", "bob", None)]
            assert conn.execute("SELECT user_name FROM user_risk_dirty WHERE tenant = 't' ORDER BY 1").fetchall()[-1] == ("bob",)
        downgrade(url, BEFORE_0012)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM anomalies").fetchone() == (2,)
            assert conn.execute("SELECT to_regclass('incidents')").fetchone() == (None,)
        upgrade(url)
    finally:
        drop_database(server_url, name)


def test_description_search_has_a_trigram_index_where_the_server_has_pg_trgm(pg):
    available = pg.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").fetchone() is not None
    present = pg.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (DESCRIPTION_TRIGRAM_INDEX,)).fetchone() is not None
    assert present == available
