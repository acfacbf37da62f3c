"""Initial store: every table DESIGN.md names; events partitioned by day (partitions are
created on demand by ueba.store.partitions).

Revision ID: 0001
Revises: 
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import ueba.store.schema

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('anomalies',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('id', sa.UUID(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_name', sa.Text(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('profile_id', sa.Text(), nullable=False),
    sa.Column('profile_name', sa.Text(), nullable=False),
    sa.Column('profile_kind', sa.Text(), nullable=False),
    sa.Column('risk_score', sa.SmallInteger(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('dimension', sa.Text(), nullable=False),
    sa.Column('time', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('window_start', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('window_end', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('status', sa.Text(), server_default='new', nullable=False),
    sa.Column('evidence', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('dedup_key', sa.Text(), nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('reviewed_by', sa.Text(), nullable=True),
    sa.Column('reviewed_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('review_comment', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_anomalies')),
    sa.UniqueConstraint('tenant', 'dedup_key', name=op.f('uq_anomalies_tenant_dedup_key'))
    )
    op.create_index(op.f('ix_anomalies_tenant_status_time'), 'anomalies', ['tenant', 'status', 'time'], unique=False)
    op.create_index(op.f('ix_anomalies_tenant_time'), 'anomalies', ['tenant', 'time'], unique=False)
    op.create_index(op.f('ix_anomalies_tenant_user_name_time'), 'anomalies', ['tenant', 'user_name', 'time'], unique=False)
    op.create_table('api_tokens',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('id', sa.UUID(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('token_hash', sa.Text(), nullable=False),
    sa.Column('created_by', sa.Text(), server_default='', nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_used_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('revoked_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('target', sa.Text(), server_default='', nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_index(op.f('ix_audit_log_tenant_at'), 'audit_log', ['tenant', 'at'], unique=False)
    op.create_table('entity_seen',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('user_name', sa.Text(), nullable=False),
    sa.Column('entity_type', sa.Text(), nullable=False),
    sa.Column('entity', sa.Text(), nullable=False),
    sa.Column('first_seen', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('last_seen', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('seen_count', sa.BigInteger(), server_default='1', nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'user_name', 'entity_type', 'entity', name=op.f('pk_entity_seen'))
    )
    op.create_table('event_scores',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('user_name', sa.Text(), nullable=False),
    sa.Column('hour', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('score', sa.SmallInteger(), nullable=False),
    sa.Column('features', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('learning', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('run_id', sa.UUID(as_uuid=False), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'user_name', 'hour', 'model', name=op.f('pk_event_scores'))
    )
    op.create_index(op.f('ix_event_scores_tenant_hour'), 'event_scores', ['tenant', 'hour'], unique=False)
    op.create_table('events',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('event_id', sa.Text(), nullable=False),
    sa.Column('time', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('user_name', sa.Text(), nullable=False),
    sa.Column('event_type', sa.Text(), nullable=False),
    sa.Column('outcome', sa.Text(), server_default='unspecified', nullable=False),
    sa.Column('source_ip', postgresql.INET(), nullable=True),
    sa.Column('source_host', sa.Text(), nullable=True),
    sa.Column('destination_host', sa.Text(), nullable=True),
    sa.Column('destination_ip', postgresql.INET(), nullable=True),
    sa.Column('application', sa.Text(), nullable=True),
    sa.Column('country', sa.Text(), nullable=True),
    sa.Column('city', sa.Text(), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('bytes', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('file_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('object', sa.Text(), nullable=True),
    sa.Column('department', sa.Text(), nullable=True),
    sa.Column('user_agent', sa.Text(), nullable=True),
    sa.Column('action', sa.Text(), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('producer', sa.Text(), nullable=True),
    sa.Column('logon_type', sa.SmallInteger(), nullable=True),
    sa.Column('trusted_source', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('ingested_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('txid', ueba.store.schema.Xid8(), server_default=sa.text('pg_current_xact_id()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'event_id', 'time', name=op.f('pk_events')),
    postgresql_partition_by='RANGE (time)'
    )
    op.create_index(op.f('ix_events_tenant_user_name_time'), 'events', ['tenant', 'user_name', 'time'], unique=False)
    op.create_table('ignored_users',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('user_name', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), server_default='', nullable=False),
    sa.Column('added_by', sa.Text(), server_default='', nullable=False),
    sa.Column('added_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'user_name', name=op.f('pk_ignored_users'))
    )
    op.create_table('peer_groups',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('members', postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('profile', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('updated_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'id', name=op.f('pk_peer_groups'))
    )
    op.create_table('profiles',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('id', sa.UUID(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('risk_score', sa.SmallInteger(), nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('dimension', sa.Text(), server_default='', nullable=False),
    sa.Column('applications', postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('parameters', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('builtin', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_profiles')),
    sa.UniqueConstraint('tenant', 'name', name=op.f('uq_profiles_tenant_name'))
    )
    op.create_table('scoring_runs',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('id', sa.UUID(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('trigger', sa.Text(), nullable=False),
    sa.Column('range_start', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('range_end', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('started_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('figures', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scoring_runs'))
    )
    op.create_index(op.f('ix_scoring_runs_tenant_started_at'), 'scoring_runs', ['tenant', 'started_at'], unique=False)
    op.create_table('user_hour_features',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('user_name', sa.Text(), nullable=False),
    sa.Column('hour', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('features', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('event_count', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'user_name', 'hour', 'model', name=op.f('pk_user_hour_features'))
    )
    op.create_index(op.f('ix_user_hour_features_tenant_hour'), 'user_hour_features', ['tenant', 'hour'], unique=False)
    op.create_table('user_scores',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('user_name', sa.Text(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('scored_hours', sa.Integer(), nullable=False),
    sa.Column('learning', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('top_features', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('run_id', sa.UUID(as_uuid=False), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'user_name', 'day', name=op.f('pk_user_scores'))
    )
    op.create_index(op.f('ix_user_scores_tenant_day_score'), 'user_scores', ['tenant', 'day', 'score'], unique=False)
    op.create_table('users',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('user_name', sa.Text(), nullable=False),
    sa.Column('department', sa.Text(), nullable=True),
    sa.Column('first_seen', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('last_seen', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('peer_group_id', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'user_name', name=op.f('pk_users'))
    )


def downgrade() -> None:
    op.drop_table('users')
    op.drop_index(op.f('ix_user_scores_tenant_day_score'), table_name='user_scores')
    op.drop_table('user_scores')
    op.drop_index(op.f('ix_user_hour_features_tenant_hour'), table_name='user_hour_features')
    op.drop_table('user_hour_features')
    op.drop_index(op.f('ix_scoring_runs_tenant_started_at'), table_name='scoring_runs')
    op.drop_table('scoring_runs')
    op.drop_table('profiles')
    op.drop_table('peer_groups')
    op.drop_table('ignored_users')
    op.drop_index(op.f('ix_events_tenant_user_name_time'), table_name='events')
    op.drop_table('events')
    op.drop_index(op.f('ix_event_scores_tenant_hour'), table_name='event_scores')
    op.drop_table('event_scores')
    op.drop_table('entity_seen')
    op.drop_index(op.f('ix_audit_log_tenant_at'), table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_table('api_tokens')
    op.drop_index(op.f('ix_anomalies_tenant_user_name_time'), table_name='anomalies')
    op.drop_index(op.f('ix_anomalies_tenant_time'), table_name='anomalies')
    op.drop_index(op.f('ix_anomalies_tenant_status_time'), table_name='anomalies')
    op.drop_table('anomalies')
