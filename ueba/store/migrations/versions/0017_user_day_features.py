"""A row per user and UTC day with the day's sums of the hourly features, for the scorer's baselines.

A 30-day baseline read about 710 jsonb rows a user, eight scans of the whole user_hour_features
heap at 10,000 users (19 s of a 32 s run); the day rollup is about 30 small rows a user. The scorer's
aggregation writes it with the hours, in their transaction (services/scorer/day_features.py);
backfilled here from the existing hours by the same statement.

Revision ID: 0017_user_day_features
Revises: 0016_risk_hour_totals
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from services.scorer import day_features

revision = '0017_user_day_features'
down_revision = '0016_risk_hour_totals'
branch_labels = None
depends_on = None

TZ = postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table('user_day_features',
        sa.Column('tenant', sa.Text(), nullable=False),
        sa.Column('user_name', sa.Text(), nullable=False),
        sa.Column('day', TZ, nullable=False),
        sa.Column('active_hours', sa.Integer(), nullable=False),
        sa.Column('active_hours_of_day', sa.Integer(), nullable=False),
        sa.Column('first_active', TZ, nullable=True),
        sa.Column('sums', postgresql.ARRAY(sa.Float()), nullable=False),
        sa.PrimaryKeyConstraint('tenant', 'user_name', 'day', name=op.f('pk_user_day_features')),
    )
    op.create_index(op.f('ix_user_day_features_tenant_day'), 'user_day_features', ['tenant', 'day'], unique=False)
    day_features.rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_index(op.f('ix_user_day_features_tenant_day'), table_name='user_day_features')
    op.drop_table('user_day_features')
