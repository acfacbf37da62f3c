"""The migrated store matches the table definitions, and event partitions behave."""

from datetime import date

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ueba.db import libpq_url
from ueba.store import partitions
from ueba.store.schema import TENANT_INDEPENDENT, metadata


def _is_partition(change) -> bool:
    kind, obj = change[0], change[1]
    table = obj if kind == "remove_table" else getattr(obj, "table", None)
    return kind in ("remove_table", "remove_index") and table is not None and table.name.startswith("events_p")


def test_migrations_match_table_definitions(engine, pg):
    partitions.ensure_partitions(pg, {date(2026, 2, 1)})  # partitions and their indexes are not drift
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # Partitions are created at run time, not by migrations.
    diff = [d for d in diff if not _is_partition(d)]
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
