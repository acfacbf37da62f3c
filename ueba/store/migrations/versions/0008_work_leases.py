"""Hash-bucket leases for profiles and scorer replicas, and the scorer's per-bucket state.

- work_leases (pool, bucket): owner, fencing token, expiry and heartbeat; `buckets`
  records the pool's N.
- work_lease_members (pool, owner): live replicas, for the fair share.
- scorer_cursors (tenant): the scorer's feature cursor (it was the snapshot in the
  figures of the last succeeded run; aggregation now commits before scoring).
- scorer_buckets (tenant, bucket): the last scheduled fire scored.
- ueba_bucket(tenant, user, n): the one definition of a user's bucket. hashtextextended
  is what hash partitioning uses, so it is stable across Postgres versions and
  platforms; SQL filters with it directly (no stored bucket column in `events`).

Revision ID: 0008_work_leases
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0008_work_leases'
down_revision = '0001'
branch_labels = None
depends_on = None

BUCKET_FUNCTION = """CREATE OR REPLACE FUNCTION ueba_bucket(tenant text, user_name text, buckets integer)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT (((hashtextextended(tenant || '/' || user_name, 0) % buckets) + buckets) % buckets)::integer $$"""


def upgrade() -> None:
    op.create_table('work_leases',
    sa.Column('pool', sa.Text(), nullable=False),
    sa.Column('bucket', sa.Integer(), nullable=False),
    sa.Column('buckets', sa.Integer(), nullable=False),
    sa.Column('owner', sa.Text(), nullable=True),
    sa.Column('token', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('expires_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('heartbeat_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('pool', 'bucket', name=op.f('pk_work_leases'))
    )
    op.create_table('work_lease_members',
    sa.Column('pool', sa.Text(), nullable=False),
    sa.Column('owner', sa.Text(), nullable=False),
    sa.Column('joined_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pool', 'owner', name=op.f('pk_work_lease_members'))
    )
    op.create_table('scorer_cursors',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('snapshot', sa.Text(), nullable=False),
    sa.Column('updated_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant', name=op.f('pk_scorer_cursors'))
    )
    op.create_table('scorer_buckets',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('bucket', sa.Integer(), nullable=False),
    sa.Column('scheduled_at', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('run_id', postgresql.UUID(as_uuid=False), nullable=False),
    sa.Column('updated_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'bucket', name=op.f('pk_scorer_buckets'))
    )
    op.execute(BUCKET_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION ueba_bucket(text, text, integer)")
    op.drop_table('scorer_buckets')
    op.drop_table('scorer_cursors')
    op.drop_table('work_lease_members')
    op.drop_table('work_leases')
