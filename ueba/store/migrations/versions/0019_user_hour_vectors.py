"""A row per user-hour with every stored feature in a float8 array, for the scorer's hourly reads.

The same-weekday sums of a 10,000-user baseline read 1.37 M jsonb rows of user_hour_features,
parsing each model's fields (4.2-4.4 s); the same sums over these rows, one an hour with array
elements, took 1.4-1.6 s. The scorer's aggregation writes them with the hours, in their
transaction (services/scorer/hour_vectors.py); backfilled here from the existing hours by the
same statement.

Revision ID: 0019_user_hour_vectors
Revises: 0018_anomaly_description_trigram
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from services.scorer import hour_vectors

revision = '0019_user_hour_vectors'
down_revision = '0018_anomaly_description_trigram'
branch_labels = None
depends_on = None

TZ = postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table('user_hour_vectors',
        sa.Column('tenant', sa.Text(), nullable=False),
        sa.Column('user_name', sa.Text(), nullable=False),
        sa.Column('hour', TZ, nullable=False),
        sa.Column('models', sa.Integer(), nullable=False),
        sa.Column('vals', postgresql.ARRAY(sa.Float()), nullable=False),
        sa.PrimaryKeyConstraint('tenant', 'user_name', 'hour', name=op.f('pk_user_hour_vectors')),
    )
    op.create_index(op.f('ix_user_hour_vectors_tenant_hour'), 'user_hour_vectors', ['tenant', 'hour'], unique=False)
    hour_vectors.rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_index(op.f('ix_user_hour_vectors_tenant_hour'), table_name='user_hour_vectors')
    op.drop_table('user_hour_vectors')
