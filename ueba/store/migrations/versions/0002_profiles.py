"""Profiles evaluator: its commit-order cursor, the per-tenant seeding marker of the
built-in profiles, and an index on events.txid so that tailing new rows is a range
scan (created on the partitioned parent, so on every partition).

Revision ID: 0002_profiles
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002_profiles'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('profile_cursors',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('consumer', sa.Text(), nullable=False),
    sa.Column('snapshot', sa.Text(), nullable=False),
    sa.Column('high_water', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('updated_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'consumer', name=op.f('pk_profile_cursors'))
    )
    op.create_table('profile_seeds',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('seeded_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant', name=op.f('pk_profile_seeds'))
    )
    op.create_index(op.f('ix_events_txid'), 'events', ['txid'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_events_txid'), table_name='events')
    op.drop_table('profile_seeds')
    op.drop_table('profile_cursors')
