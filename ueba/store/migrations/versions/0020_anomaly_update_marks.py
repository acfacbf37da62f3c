"""Every UPDATE of anomalies leaves an unmerged delta row, so the rollup version moves with it.

The rollup triggers of 0004 write only the deltas that do not net to zero, so an update that
changes no counted facet (a refreshed finding's description, an incident or entity linked) left
the rollup version (the generation and the unmerged delta rows) as it was. The query service now
caches ListAnomalies' capped counts per version (services/query/README.md, "The capped count
cache"), which needs the version to move with every change to a row a filter can match. This
trigger adds one zero delta per tenant an UPDATE touched, in an hour bucket it touched: the merge
drops it like any delta that sums to zero (and recomputes that hour's totals, unchanged). INSERT
and DELETE always change the counts, so their deltas never net to zero.

Revision ID: 0020_anomaly_update_marks
Revises: 0019_user_hour_vectors
"""
from alembic import op

revision = '0020_anomaly_update_marks'
down_revision = '0019_user_hour_vectors'
branch_labels = None
depends_on = None

NAME = "ueba_anomalies_update_marked"
BODY = """
    INSERT INTO anomaly_rollup (tenant, grain, bucket, facet, key, anomalies, points)
    SELECT DISTINCT ON (tenant) tenant, 'hour', date_trunc('hour', time, 'UTC'), 'status', status, 0, 0
    FROM new_rows;
"""


def upgrade() -> None:
    op.execute(f"CREATE FUNCTION {NAME}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {BODY} RETURN NULL; END $$")
    op.execute(f"CREATE TRIGGER {NAME} AFTER UPDATE ON anomalies REFERENCING NEW TABLE AS new_rows"
               f" FOR EACH STATEMENT EXECUTE FUNCTION {NAME}()")


def downgrade() -> None:
    op.execute(f"DROP TRIGGER {NAME} ON anomalies")
    op.execute(f"DROP FUNCTION {NAME}()")
