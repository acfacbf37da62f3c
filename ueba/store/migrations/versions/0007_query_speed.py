"""Query service speed: covering indexes for the hot reads, and a rollup version for the summary cache.

- anomaly_rollup (tenant, grain, bucket) INCLUDE (facet, key, anomalies, points):
  the summary's bucket ranges become index-only scans instead of one heap page
  per row (merging scatters a bucket's rows over the table).
- anomalies (tenant, user_name, time) INCLUDE (risk_score, profile_name) WHERE
  status = 'new': a user's open scores and open counts per profile (GetUser, the
  user-risk refresh) without visiting the rows.
- event_counts (tenant, hour) INCLUDE (events): events in a range, index-only.
- query_rollup_versions: per tenant, a generation the rollup merge bumps in its
  own transaction (and the truncate trigger, which empties the rollup). With the
  count of unmerged delta rows it tells the query service whether cached rollup
  totals still hold (services/query/summary.py).

Revision ID: 0007_query_speed
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0007_query_speed'
down_revision = '0001'
branch_labels = None
depends_on = '0004_query'

TRUNCATED_0004 = "DELETE FROM anomaly_rollup; DELETE FROM user_risk; DELETE FROM user_risk_dirty;"
TRUNCATED = TRUNCATED_0004 + " UPDATE query_rollup_versions SET generation = generation + 1;"


def _truncate_function(body: str) -> None:
    op.execute(f"CREATE OR REPLACE FUNCTION ueba_anomalies_truncated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$")


def upgrade() -> None:
    op.create_table('query_rollup_versions',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('generation', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', name=op.f('pk_query_rollup_versions'))
    )
    op.create_index('ix_anomaly_rollup_buckets_covering', 'anomaly_rollup', ['tenant', 'grain', 'bucket'], unique=False,
                    postgresql_include=['facet', 'key', 'anomalies', 'points'])
    op.create_index('ix_anomalies_open_by_user', 'anomalies', ['tenant', 'user_name', 'time'], unique=False,
                    postgresql_include=['risk_score', 'profile_name'], postgresql_where=sa.text("status = 'new'"))
    op.create_index('ix_event_counts_hours_covering', 'event_counts', ['tenant', 'hour'], unique=False,
                    postgresql_include=['events'])
    _truncate_function(TRUNCATED)


def downgrade() -> None:
    _truncate_function(TRUNCATED_0004)
    op.drop_index('ix_event_counts_hours_covering', table_name='event_counts')
    op.drop_index('ix_anomalies_open_by_user', table_name='anomalies')
    op.drop_index('ix_anomaly_rollup_buckets_covering', table_name='anomaly_rollup')
    op.drop_table('query_rollup_versions')
