"""One row per bucket for the baseline arrays scorer replicas share.

- scorer_baseline_buckets (tenant, state, n, bucket): the baseline arrays of one
  bucket's users (np.savez), read one bucket at a time by the other replicas of a
  fire, which add them into peer-group sums and drop them
  (services/scorer/baseline_share.py). A row each, so that reading one bucket reads
  (and decompresses) that bucket alone; scorer_baselines keeps a row per set of
  buckets with the users and their behaviour profiles. Rows live about an hour.

Revision ID: 0011_scorer_baseline_buckets
Revises: 0010_event_scores_partitions
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0011_scorer_baseline_buckets'
down_revision = '0010_event_scores_partitions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('scorer_baseline_buckets',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('bucket', sa.Integer(), nullable=False),
    sa.Column('arrays', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'state', 'n', 'bucket', name=op.f('pk_scorer_baseline_buckets'))
    )


def downgrade() -> None:
    op.drop_table('scorer_baseline_buckets')
