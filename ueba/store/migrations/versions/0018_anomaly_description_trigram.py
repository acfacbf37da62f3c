"""A trigram index on anomalies.description, where the server has pg_trgm.

A description search (`"new country"`, a bare word) is an ILIKE '%text%': without an index,
ListAnomalies' capped count filters rows in table order until it has 1,001 matches, about 10,000
rows for a word in a tenth of the descriptions (5-6 ms of backend CPU at the benchmark's size,
the tail of the query benchmark) and every row for a rare word (65-110 ms for 11 matches of
100,000). GIN with gin_trgm_ops serves ILIKE directly: the same counts took 4.5 and 2 ms
(services/query/README.md, "Indexes").

pg_trgm ships with Postgres (contrib) and is a trusted extension, but the embedded server of
`make run` and the tests (pgserver) lacks it: there the migration leaves the index out and the
search filters rows as before, with the same answers. The index is built in the migration's
transaction like the others, so writes to anomalies wait for it (1.5 s for 100,000 rows here);
afterwards each new finding adds its trigrams to the index's pending list (GIN fast update).

Revision ID: 0018_anomaly_description_trigram
Revises: 0017_user_day_features
"""
import logging

from alembic import op
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from ueba.store.schema import DESCRIPTION_TRIGRAM_INDEX

revision = '0018_anomaly_description_trigram'
down_revision = '0017_user_day_features'
branch_labels = None
depends_on = None


INSUFFICIENT_PRIVILEGE = "42501"

log = logging.getLogger(__name__)


def _has_pg_trgm(bind: Connection) -> bool:
    """pg_trgm installed, or installed now; False where the server lacks it or the migrating role
    may not create it (a role without CREATE on the database), so that neither blocks a deploy."""
    if bind.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first() is None:
        return False
    try:
        with bind.begin_nested():
            bind.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
            raise
        log.warning("pg_trgm may not be created by this role: description search stays without its index")
        return False
    return True


def upgrade() -> None:
    if not _has_pg_trgm(op.get_bind()):
        return
    op.create_index(DESCRIPTION_TRIGRAM_INDEX, 'anomalies', ['description'], unique=False, postgresql_using='gin',
                    postgresql_ops={'description': 'gin_trgm_ops'})


def downgrade() -> None:
    # The extension stays: other objects of the database may have come to use it.
    op.execute(f"DROP INDEX IF EXISTS {DESCRIPTION_TRIGRAM_INDEX}")
