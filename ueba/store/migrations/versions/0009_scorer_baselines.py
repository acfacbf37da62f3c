"""Per-user baselines shared between the scorer replicas of one fire.

- scorer_baselines (tenant, state, buckets): the baseline arrays of the users of
  some buckets, published by the replica that loaded them, read by the others
  (services/scorer/baseline_share.py). Rows live about an hour.
- scorer_cursors.features_version: grows whenever aggregation changed the tenant's
  features; with the day and hours scored, it names the data a baseline is of.

Revision ID: 0009_scorer_baselines
Revises: 0008_work_leases
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0009_scorer_baselines'
down_revision = '0008_work_leases'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('scorer_cursors', sa.Column('features_version', sa.BigInteger(), server_default=sa.text('0'),
                                              nullable=False))
    op.create_table('scorer_baselines',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('run_id', postgresql.UUID(as_uuid=False), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('buckets', postgresql.ARRAY(sa.Integer()), nullable=False),
    sa.Column('users', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('arrays', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'state', 'buckets', name=op.f('pk_scorer_baselines'))
    )


def downgrade() -> None:
    op.drop_table('scorer_baselines')
    op.drop_column('scorer_cursors', 'features_version')
