"""Query service: keyset indexes on anomalies, and pre-aggregates kept by triggers.

- anomalies (tenant, time, id) and (tenant, risk_score, time, id): keyset pagination
  in time and risk order is an index range scan.
- anomaly_rollup: anomaly counts and points per hour and per day and per facet
  (level, profile, dimension, status, source), as append-only deltas written by
  statement triggers on anomalies, so no writer ever waits on another; the query
  service merges a bucket's deltas in the background.
- event_counts: events per hour, the same way, from a statement trigger on events.
- user_risk / user_risk_dirty: each user's current risk, recomputed by the query
  service for the users a trigger marked dirty.

Risk level bands in the trigger come from ueba.risk at migration time; a change to
the bands needs a new migration.

Revision ID: 0004_query
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ueba.risk import level_floor

revision = '0004_query'
down_revision = '0001'
branch_labels = None
depends_on = None

TZ = postgresql.TIMESTAMP(timezone=True)

LEVEL_SQL = (
    f"CASE WHEN d.risk_score >= {level_floor('critical')} THEN 'critical' "
    f"WHEN d.risk_score >= {level_floor('high')} THEN 'high' "
    f"WHEN d.risk_score >= {level_floor('medium')} THEN 'medium' ELSE 'low' END"
)

ANOMALY_COLUMNS = "tenant, user_name, time, profile_name, dimension, status, source, risk_score"


def _anomaly_delta_sql(sources: str) -> str:
    return f"""
    INSERT INTO anomaly_rollup (tenant, grain, bucket, facet, key, anomalies, points)
    SELECT d.tenant, g.grain, date_trunc(g.grain, d.time, 'UTC'), f.facet, f.key,
           sum(d.sign), sum(d.sign * d.risk_score)
    FROM ({sources}) d
    CROSS JOIN (VALUES ('hour'), ('day')) g(grain)
    CROSS JOIN LATERAL (VALUES ('level', {LEVEL_SQL}), ('profile', d.profile_name),
                               ('dimension', d.dimension), ('status', d.status),
                               ('source', d.source)) f(facet, key)
    GROUP BY 1, 2, 3, 4, 5
    HAVING sum(d.sign) <> 0 OR sum(d.sign * d.risk_score) <> 0;
    INSERT INTO user_risk_dirty (tenant, user_name) SELECT DISTINCT tenant, user_name FROM ({sources}) d;
    """


NEW = f"SELECT {ANOMALY_COLUMNS}, 1 AS sign FROM new_rows"
OLD = f"SELECT {ANOMALY_COLUMNS}, -1 AS sign FROM old_rows"

FUNCTIONS = {
    "ueba_anomalies_inserted": _anomaly_delta_sql(NEW),
    "ueba_anomalies_updated": _anomaly_delta_sql(f"{NEW} UNION ALL {OLD}"),
    "ueba_anomalies_deleted": _anomaly_delta_sql(OLD),
    "ueba_anomalies_truncated": "DELETE FROM anomaly_rollup; DELETE FROM user_risk; DELETE FROM user_risk_dirty;",
    "ueba_events_inserted": """
        INSERT INTO event_counts (tenant, hour, events)
        SELECT tenant, date_trunc('hour', time, 'UTC'), count(*) FROM new_rows GROUP BY 1, 2;""",
    "ueba_events_deleted": """
        INSERT INTO event_counts (tenant, hour, events)
        SELECT tenant, date_trunc('hour', time, 'UTC'), -count(*) FROM old_rows GROUP BY 1, 2;""",
    "ueba_events_truncated": "DELETE FROM event_counts;",
}

TRIGGERS = [
    ("ueba_anomalies_inserted", "anomalies", "INSERT", "NEW TABLE AS new_rows"),
    ("ueba_anomalies_updated", "anomalies", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("ueba_anomalies_deleted", "anomalies", "DELETE", "OLD TABLE AS old_rows"),
    ("ueba_anomalies_truncated", "anomalies", "TRUNCATE", None),
    ("ueba_events_inserted", "events", "INSERT", "NEW TABLE AS new_rows"),
    ("ueba_events_deleted", "events", "DELETE", "OLD TABLE AS old_rows"),
    ("ueba_events_truncated", "events", "TRUNCATE", None),
]


def upgrade() -> None:
    op.create_index('ix_anomalies_tenant_time_id', 'anomalies', ['tenant', 'time', 'id'], unique=False)
    op.create_index('ix_anomalies_tenant_risk_score_time_id', 'anomalies', ['tenant', 'risk_score', 'time', 'id'], unique=False)
    op.create_table('anomaly_rollup',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('grain', sa.Text(), nullable=False),
    sa.Column('bucket', TZ, nullable=False),
    sa.Column('facet', sa.Text(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('anomalies', sa.BigInteger(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('merged', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    )
    op.create_index('ix_anomaly_rollup_tenant_grain_bucket', 'anomaly_rollup', ['tenant', 'grain', 'bucket'], unique=False)
    op.create_index('ix_anomaly_rollup_unmerged', 'anomaly_rollup', ['tenant', 'grain', 'bucket'], unique=False,
                    postgresql_where=sa.text('NOT merged'))
    op.create_table('event_counts',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('hour', TZ, nullable=False),
    sa.Column('events', sa.BigInteger(), nullable=False),
    sa.Column('merged', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    )
    op.create_index('ix_event_counts_tenant_hour', 'event_counts', ['tenant', 'hour'], unique=False)
    op.create_index('ix_event_counts_unmerged', 'event_counts', ['tenant', 'hour'], unique=False,
                    postgresql_where=sa.text('NOT merged'))
    op.create_table('user_risk',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('user_name', sa.Text(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('risk', sa.SmallInteger(), nullable=False),
    sa.Column('open_anomalies', sa.Integer(), nullable=False),
    sa.Column('oldest_open', TZ, nullable=True),
    sa.Column('updated_at', TZ, server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'user_name', name=op.f('pk_user_risk'))
    )
    op.create_index('ix_user_risk_tenant_risk_points_user_name', 'user_risk', ['tenant', 'risk', 'points', 'user_name'], unique=False)
    op.create_index('ix_user_risk_tenant_oldest_open', 'user_risk', ['tenant', 'oldest_open'], unique=False)
    op.create_table('user_risk_dirty',
    sa.Column('tenant', sa.Text(), nullable=False),
    sa.Column('user_name', sa.Text(), nullable=False),
    )
    op.create_index('ix_user_risk_dirty_tenant', 'user_risk_dirty', ['tenant'], unique=False)

    for name, body in FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$")
    for name, table, event, referencing in TRIGGERS:
        ref = f"REFERENCING {referencing} " if referencing else ""
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} {ref}FOR EACH STATEMENT EXECUTE FUNCTION {name}()")

    # Rows stored before this migration: aggregate them once.
    op.execute(_anomaly_delta_sql(f"SELECT {ANOMALY_COLUMNS}, 1 AS sign FROM anomalies"))
    op.execute("INSERT INTO event_counts (tenant, hour, events) "
               "SELECT tenant, date_trunc('hour', time, 'UTC'), count(*) FROM events GROUP BY 1, 2")


def downgrade() -> None:
    for name, table, _event, _ref in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    for name in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table('user_risk_dirty')
    op.drop_table('user_risk')
    op.drop_table('event_counts')
    op.drop_table('anomaly_rollup')
    op.drop_index('ix_anomalies_tenant_risk_score_time_id', table_name='anomalies')
    op.drop_index('ix_anomalies_tenant_time_id', table_name='anomalies')
