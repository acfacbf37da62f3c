"""Cases and suppression rules.

- cases, case_incidents, case_entries: a case over one or more incidents (an incident is in
  at most one case), with owner, status, close reason, severity and a timeline of every
  change with its actor (comments are entries too).
- suppression_rules: suppress or down-weight findings by entity, profile, address range or
  query string, until they expire or are deleted.
- anomalies.suppressed_by / original_score: the rule that changed a finding, and its score
  before a down-weighting rule. A suppressed finding has the status 'suppressed', so every
  reader of open findings ('new') leaves it out of risk without a change.
- ueba_try_inet(text): an address or NULL, so that a range test never fails on a name that
  is not an address.

Revision ID: 0013_cases_suppression
Revises: 0012_entities_incidents
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0013_cases_suppression'
down_revision = '0012_entities_incidents'
branch_labels = None
depends_on = None

TZ = postgresql.TIMESTAMP(timezone=True)
UUID = postgresql.UUID(as_uuid=False)
JSONB = postgresql.JSONB()

TRY_INET = ("CREATE FUNCTION ueba_try_inet(value text) RETURNS inet LANGUAGE plpgsql IMMUTABLE AS $$"
            " BEGIN RETURN value::inet; EXCEPTION WHEN others THEN RETURN NULL; END $$")


def upgrade() -> None:
    op.add_column('anomalies', sa.Column('suppressed_by', UUID, nullable=True))
    op.add_column('anomalies', sa.Column('original_score', sa.SmallInteger(), nullable=True))
    op.execute(TRY_INET)

    op.create_table('cases',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('id', UUID, server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), server_default='new', nullable=False),
    sa.Column('close_reason', sa.Text(), nullable=True),
    sa.Column('severity', sa.Text(), nullable=False),
    sa.Column('owner', sa.Text(), server_default='', nullable=False),
    sa.Column('created_by', sa.Text(), nullable=False),
    sa.Column('created_at', TZ, server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', TZ, server_default=sa.text('now()'), nullable=False),
    sa.Column('closed_at', TZ, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases')),
    )
    op.create_index('ix_cases_tenant_updated_at_id', 'cases', ['tenant', 'updated_at', 'id'])
    op.create_table('case_incidents',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('case_id', UUID, nullable=False),
    sa.Column('incident_id', UUID, nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'incident_id', name=op.f('pk_case_incidents')),
    )
    op.create_index('ix_case_incidents_tenant_case_id', 'case_incidents', ['tenant', 'case_id'])
    op.create_table('case_entries',
    sa.Column('id', sa.BigInteger(), sa.Identity(), nullable=False),
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('case_id', UUID, nullable=False),
    sa.Column('at', TZ, server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), server_default='', nullable=False),
    sa.Column('details', JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_entries')),
    )
    op.create_index('ix_case_entries_tenant_case_id_id', 'case_entries', ['tenant', 'case_id', 'id'])

    op.create_table('suppression_rules',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('id', UUID, server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('entity_type', sa.Text(), nullable=True),
    sa.Column('entity', sa.Text(), nullable=True),
    sa.Column('profile', sa.Text(), nullable=True),
    sa.Column('cidr', sa.Text(), nullable=True),
    sa.Column('query', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_by', sa.Text(), nullable=False),
    sa.Column('created_at', TZ, server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', TZ, nullable=True),
    sa.Column('deleted_at', TZ, nullable=True),
    sa.Column('deleted_by', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppression_rules')),
    )
    op.create_index('ix_suppression_rules_tenant_created_at', 'suppression_rules', ['tenant', 'created_at'])


def downgrade() -> None:
    op.drop_table('suppression_rules')
    op.drop_table('case_entries')
    op.drop_table('case_incidents')
    op.drop_table('cases')
    op.execute("DROP FUNCTION ueba_try_inet(text)")
    op.drop_column('anomalies', 'original_score')
    op.drop_column('anomalies', 'suppressed_by')
