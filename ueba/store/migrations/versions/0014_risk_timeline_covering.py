"""The risk timeline reads anomalies index-only.

GetRiskTimeline counts, per bucket, the anomalies, their points and the distinct accounts, leaving
out false positives and ignored accounts: at the benchmark's size (100,000 anomalies in 30 days) a
30-day hourly timeline visited ~3,700 heap pages and sorted 93,000 rows on disk. The plain
(tenant, time) index becomes (tenant, time) INCLUDE (user_name, risk_score, status), so each bucket
is an index-only range scan (services/query/README.md, "Indexes"); every reader of the plain index
is served by the covering one, so anomalies keep the same number of indexes to write.

Revision ID: 0014_risk_timeline_covering
Revises: 0013_cases_suppression
"""
from alembic import op

revision = '0014_risk_timeline_covering'
down_revision = '0013_cases_suppression'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_anomalies_tenant_time', table_name='anomalies')
    op.create_index('ix_anomalies_tenant_time_covering', 'anomalies', ['tenant', 'time'], unique=False,
                    postgresql_include=['user_name', 'risk_score', 'status'])


def downgrade() -> None:
    op.drop_index('ix_anomalies_tenant_time_covering', table_name='anomalies')
    op.create_index('ix_anomalies_tenant_time', 'anomalies', ['tenant', 'time'], unique=False)
