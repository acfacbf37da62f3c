"""The transactional outbox and its deliveries (services/delivery, docs/integrations.md).

- outbox: one row per finding, incident change and risk level crossing, written by
  ueba/store/anomalies.py in the transaction of the finding itself; `document` is the JSON
  every destination receives and `event_id` its idempotency key.
- deliveries: one row per outbox row and configured destination, created by the delivery
  service when it routes the row; pending rows are claimed with leases, so the rows of a
  worker that died are retried; `dead` holds what was given up.

Revision ID: 0015_outbox
Revises: 0014_risk_timeline_covering
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0015_outbox'
down_revision = '0014_risk_timeline_covering'
branch_labels = None
depends_on = None

TZ = postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('event_id', postgresql.UUID(as_uuid=False), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('entity_type', sa.Text(), nullable=False),
    sa.Column('entity', sa.Text(), nullable=False),
    sa.Column('risk_score', sa.SmallInteger(), nullable=False),
    sa.Column('document', postgresql.JSONB(), nullable=False),
    sa.Column('routed', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', TZ, server_default=sa.text('clock_timestamp()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('event_id', name=op.f('uq_outbox_event_id')),
    )
    op.create_index('ix_outbox_routed_id', 'outbox', ['routed', 'id'])
    op.create_index('ix_outbox_created_at', 'outbox', ['created_at'])
    op.create_table('deliveries',
    sa.Column('outbox_id', sa.BigInteger(), nullable=False),
    sa.Column('destination', sa.Text(), nullable=False),
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('next_attempt_at', TZ, server_default=sa.text('now()'), nullable=False),
    sa.Column('lease_owner', sa.Text(), nullable=True),
    sa.Column('lease_until', TZ, nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', TZ, server_default=sa.text('now()'), nullable=False),
    sa.Column('delivered_at', TZ, nullable=True),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], name=op.f('fk_deliveries_outbox_id_outbox'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('outbox_id', 'destination', name=op.f('pk_deliveries')),
    )
    op.create_index('ix_deliveries_destination_status_next_attempt_at', 'deliveries',
                    ['destination', 'status', 'next_attempt_at'])
    op.create_index('ix_deliveries_destination_delivered_at', 'deliveries', ['destination', 'delivered_at'])
    op.create_index('ix_deliveries_status_outbox_id', 'deliveries', ['status', 'outbox_id'])


def downgrade() -> None:
    op.drop_table('deliveries')
    op.drop_table('outbox')
