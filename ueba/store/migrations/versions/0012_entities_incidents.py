"""Entities and incidents: findings charged to accounts, addresses and hosts, grouped into incidents.

- anomalies.entity_type ('user', 'ip', 'host') and anomalies.entity: whom the finding is
  about. Existing rows are the accounts' (entity = user_name); a BEFORE INSERT trigger fills
  `entity` from user_name when a writer leaves it out (writers of the previous release during
  a rolling upgrade). A finding about a source has user_name ''.
- anomalies.incident_id: the incident the finding belongs to (ueba/store/anomalies.py);
  no foreign key, because the finding is inserted first and its incident is created only
  when the insert was not absorbed by the dedup key.
- incidents: one activity (same entity and kind, overlapping or adjacent windows) with its
  true event count, first and last time, strongest score and review status.
- entity_risk / entity_risk_dirty: the current risk of the non-account entities, kept like
  user_risk (accounts keep user_risk, which ListUsers and the summary read): statement
  triggers beside those of 0004 mark the changed non-account entities in entity_risk_dirty.

Revision ID: 0012_entities_incidents
Revises: 0011_scorer_baseline_buckets
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0012_entities_incidents'
down_revision = '0011_scorer_baseline_buckets'
branch_labels = None
depends_on = '0007_query_speed'

TZ = postgresql.TIMESTAMP(timezone=True)
UUID = postgresql.UUID(as_uuid=False)

# Marks the non-account entities of changed anomalies dirty, beside 0004's triggers (which mark
# user_name in user_risk_dirty; '' there is claimed and finds no account risk).
_DIRTY = ("INSERT INTO entity_risk_dirty (tenant, entity_type, entity) SELECT DISTINCT tenant, entity_type, entity"
          " FROM ({rows}) d WHERE entity_type <> 'user';")
FUNCTIONS = {
    "ueba_anomalies_entities_inserted": _DIRTY.format(rows="SELECT * FROM new_rows"),
    "ueba_anomalies_entities_updated": _DIRTY.format(rows="SELECT * FROM new_rows UNION ALL SELECT * FROM old_rows"),
    "ueba_anomalies_entities_deleted": _DIRTY.format(rows="SELECT * FROM old_rows"),
}
TRIGGERS = [
    ("ueba_anomalies_entities_inserted", "INSERT", "NEW TABLE AS new_rows"),
    ("ueba_anomalies_entities_updated", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("ueba_anomalies_entities_deleted", "DELETE", "OLD TABLE AS old_rows"),
]
TRUNCATED_0007 = ("DELETE FROM anomaly_rollup; DELETE FROM user_risk; DELETE FROM user_risk_dirty;"
                  " UPDATE query_rollup_versions SET generation = generation + 1;")
TRUNCATED = TRUNCATED_0007 + " DELETE FROM entity_risk; DELETE FROM entity_risk_dirty;"

FILL_ENTITY = "IF NEW.entity IS NULL THEN NEW.entity := NEW.user_name; END IF; RETURN NEW;"


def _replace(functions: dict[str, str]) -> None:
    for name, body in functions.items():
        op.execute(f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$")


def upgrade() -> None:
    op.add_column('anomalies', sa.Column('entity_type', sa.Text(), server_default='user', nullable=False))
    op.add_column('anomalies', sa.Column('entity', sa.Text(), nullable=True))
    op.add_column('anomalies', sa.Column('incident_id', UUID, nullable=True))
    # Backfill without firing the rollup triggers: the facets do not change.
    op.execute("ALTER TABLE anomalies DISABLE TRIGGER ueba_anomalies_updated")
    op.execute("UPDATE anomalies SET entity = user_name")
    op.execute("ALTER TABLE anomalies ENABLE TRIGGER ueba_anomalies_updated")
    op.alter_column('anomalies', 'entity', nullable=False)
    op.create_index('ix_anomalies_tenant_entity_type_entity_time', 'anomalies', ['tenant', 'entity_type', 'entity', 'time'])
    op.create_index('ix_anomalies_tenant_incident_id', 'anomalies', ['tenant', 'incident_id'])
    op.execute(f"CREATE FUNCTION ueba_anomalies_fill_entity() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {FILL_ENTITY} END $$")
    op.execute("CREATE TRIGGER ueba_anomalies_fill_entity BEFORE INSERT ON anomalies"
               " FOR EACH ROW EXECUTE FUNCTION ueba_anomalies_fill_entity()")

    op.create_table('incidents',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('id', UUID, server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('entity_type', sa.Text(), nullable=False),
    sa.Column('entity', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('dimension', sa.Text(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('first_seen', TZ, nullable=False),
    sa.Column('last_seen', TZ, nullable=False),
    sa.Column('event_count', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('risk_score', sa.SmallInteger(), nullable=False),
    sa.Column('anomaly_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('status', sa.Text(), server_default='new', nullable=False),
    sa.Column('evidence', postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('reviewed_by', sa.Text(), nullable=True),
    sa.Column('reviewed_at', TZ, nullable=True),
    sa.Column('review_comment', sa.Text(), nullable=True),
    sa.Column('created_at', TZ, server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', TZ, server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incidents')),
    )
    op.create_index('ix_incidents_tenant_entity_type_entity_last_seen', 'incidents',
                    ['tenant', 'entity_type', 'entity', 'last_seen'])
    op.create_index('ix_incidents_tenant_last_seen_id', 'incidents', ['tenant', 'last_seen', 'id'])
    op.create_index('ix_incidents_tenant_risk_score_last_seen_id', 'incidents', ['tenant', 'risk_score', 'last_seen', 'id'])

    op.create_table('entity_risk',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('entity_type', sa.Text(), nullable=False),
    sa.Column('entity', sa.Text(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('risk', sa.SmallInteger(), nullable=False),
    sa.Column('open_anomalies', sa.Integer(), nullable=False),
    sa.Column('oldest_open', TZ, nullable=True),
    sa.Column('updated_at', TZ, server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'entity_type', 'entity', name=op.f('pk_entity_risk')),
    )
    op.create_index('ix_entity_risk_tenant_risk_points_entity', 'entity_risk', ['tenant', 'risk', 'points', 'entity'])
    op.create_index('ix_entity_risk_tenant_oldest_open', 'entity_risk', ['tenant', 'oldest_open'])
    op.create_table('entity_risk_dirty',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('entity_type', sa.Text(), nullable=False),
    sa.Column('entity', sa.Text(), nullable=False),
    )
    op.create_index('ix_entity_risk_dirty_tenant', 'entity_risk_dirty', ['tenant'])

    _replace(FUNCTIONS)
    for name, event, referencing in TRIGGERS:
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON anomalies REFERENCING {referencing} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()")
    _replace({"ueba_anomalies_truncated": TRUNCATED})


def downgrade() -> None:
    _replace({"ueba_anomalies_truncated": TRUNCATED_0007})
    for name, _event, _referencing in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON anomalies")
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_table('entity_risk_dirty')
    op.drop_table('entity_risk')
    op.drop_table('incidents')
    op.execute("DROP TRIGGER ueba_anomalies_fill_entity ON anomalies")
    op.execute("DROP FUNCTION ueba_anomalies_fill_entity()")
    op.drop_index('ix_anomalies_tenant_incident_id', table_name='anomalies')
    op.drop_index('ix_anomalies_tenant_entity_type_entity_time', table_name='anomalies')
    op.drop_column('anomalies', 'incident_id')
    op.drop_column('anomalies', 'entity')
    op.drop_column('anomalies', 'entity_type')
