"""Table definitions of the shared store (SQLAlchemy Core).

Alembic migrations under ueba/store/migrations create these tables; the
definitions here are what the services query with, and a test checks that
the migrated database matches them. Every table carries `tenant`; every time is
timestamptz in UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Float,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB, TIMESTAMP, UUID
from sqlalchemy.dialects.postgresql import base as postgresql_base
from sqlalchemy.types import UserDefinedType

TZ = TIMESTAMP(timezone=True)


class Xid8(UserDefinedType):
    """Postgres' 64-bit transaction id, compared against pg_snapshot values."""

    cache_ok = True

    def get_col_spec(self, **kw) -> str:
        return "xid8"


# Lets reflection (and so the migration check) recognise the column type.
postgresql_base.ischema_names["xid8"] = Xid8

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def tenant_column() -> Column:
    return Column("tenant", Text, nullable=False)


# Partitioned by day on event time (partitions: ueba.store.partitions). The
# primary key doubles as the idempotency key; `txid` records the writing
# transaction so that consumers can tail rows in commit order.
events = Table(
    "events",
    metadata,
    tenant_column(),
    Column("event_id", Text, nullable=False),
    Column("time", TZ, nullable=False),
    Column("user_name", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("outcome", Text, nullable=False, server_default="unspecified"),
    Column("source_ip", INET),
    Column("source_host", Text),
    Column("destination_host", Text),
    Column("destination_ip", INET),
    Column("application", Text),
    Column("country", Text),
    Column("city", Text),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("bytes", BigInteger, nullable=False, server_default="0"),
    Column("file_count", Integer, nullable=False, server_default="0"),
    Column("object", Text),
    Column("department", Text),
    Column("user_agent", Text),
    Column("action", Text),
    Column("failure_reason", Text),
    Column("producer", Text),
    Column("logon_type", SmallInteger),
    Column("trusted_source", Boolean, nullable=False, server_default=text("false")),
    Column("attributes", JSONB),
    Column("ingested_at", TZ, nullable=False, server_default=text("now()")),
    Column("txid", Xid8(), nullable=False, server_default=text("pg_current_xact_id()")),
    PrimaryKeyConstraint("tenant", "event_id", "time"),
    Index(None, "tenant", "user_name", "time"),
    postgresql_partition_by="RANGE (time)",
)

# One row per account seen, kept current by ingest.
users = Table(
    "users",
    metadata,
    tenant_column(),
    Column("user_name", Text, nullable=False),
    Column("department", Text),
    Column("first_seen", TZ, nullable=False),
    Column("last_seen", TZ, nullable=False),
    Column("peer_group_id", Text),
    PrimaryKeyConstraint("tenant", "user_name"),
)

profiles = Table(
    "profiles",
    metadata,
    tenant_column(),
    Column("id", UUID(as_uuid=False), nullable=False, server_default=text("gen_random_uuid()")),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("risk_score", SmallInteger, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("dimension", Text, nullable=False, server_default=""),
    Column("applications", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("parameters", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("builtin", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", TZ, nullable=False, server_default=text("now()")),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("tenant", "name"),
)

# Rule and model anomalies. `dedup_key` makes each firing exactly-once:
# a restarted evaluator or a re-run scorer writes the same key again.
anomalies = Table(
    "anomalies",
    metadata,
    tenant_column(),
    Column("id", UUID(as_uuid=False), nullable=False, server_default=text("gen_random_uuid()")),
    Column("seq", BigInteger, Identity(), nullable=False),
    Column("user_name", Text, nullable=False),  # '' for a finding about a source
    Column("source", Text, nullable=False),
    Column("profile_id", Text, nullable=False),
    Column("profile_name", Text, nullable=False),
    Column("profile_kind", Text, nullable=False),
    Column("risk_score", SmallInteger, nullable=False),
    Column("description", Text, nullable=False),
    Column("dimension", Text, nullable=False),
    Column("time", TZ, nullable=False),
    Column("window_start", TZ, nullable=False),
    Column("window_end", TZ, nullable=False),
    Column("status", Text, nullable=False, server_default="new"),
    Column("evidence", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("dedup_key", Text, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=text("now()")),
    Column("reviewed_by", Text),
    Column("reviewed_at", TZ),
    Column("review_comment", Text),
    # Whom the finding is about (migration 0012): 'user' (entity = user_name), 'ip' or 'host'.
    Column("entity_type", Text, nullable=False, server_default="user"),
    Column("entity", Text, nullable=False),
    Column("incident_id", UUID(as_uuid=False)),
    # The suppression rule that changed it, and its score before a down-weighting rule (migration 0013).
    Column("suppressed_by", UUID(as_uuid=False)),
    Column("original_score", SmallInteger),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("tenant", "dedup_key"),
    Index(None, "tenant", "user_name", "time"),
    Index(None, "tenant", "status", "time"),
)

# Hourly feature counts per user and model, aggregated from events.
user_hour_features = Table(
    "user_hour_features",
    metadata,
    tenant_column(),
    Column("user_name", Text, nullable=False),
    Column("hour", TZ, nullable=False),
    Column("model", Text, nullable=False),
    Column("features", JSONB, nullable=False),
    Column("event_count", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("tenant", "user_name", "hour", "model"),
    Index(None, "tenant", "hour"),
)

# A day's sums of each user's hourly features, kept with them by aggregation (services/scorer/day_features.py):
# the scorer's 30-day baselines read these, a row per user-day, instead of every hour's jsonb.
user_day_features = Table(
    "user_day_features",
    metadata,
    tenant_column(),
    Column("user_name", Text, nullable=False),
    Column("day", TZ, nullable=False),
    Column("active_hours", Integer, nullable=False),
    Column("active_hours_of_day", Integer, nullable=False),  # bit h: active at hour h (UTC)
    Column("first_active", TZ),
    Column("sums", ARRAY(Float), nullable=False),
    PrimaryKeyConstraint("tenant", "user_name", "day"),
    Index(None, "tenant", "day"),
)

# Each user-hour's stored features as one array, kept with them by aggregation (services/scorer/hour_vectors.py):
# the scorer's same-weekday sums and scored hours read these instead of each model's jsonb row.
user_hour_vectors = Table(
    "user_hour_vectors",
    metadata,
    tenant_column(),
    Column("user_name", Text, nullable=False),
    Column("hour", TZ, nullable=False),
    Column("models", Integer, nullable=False),  # bit i: the i-th aggregated model has a row this hour
    Column("vals", ARRAY(Float), nullable=False),  # every stored feature, in the scorer's column order
    PrimaryKeyConstraint("tenant", "user_name", "hour"),
    Index(None, "tenant", "hour"),
)

# First and last sighting of each entity per user, for novelty features.
entity_seen = Table(
    "entity_seen",
    metadata,
    tenant_column(),
    Column("user_name", Text, nullable=False),
    Column("entity_type", Text, nullable=False),
    Column("entity", Text, nullable=False),
    Column("first_seen", TZ, nullable=False),
    Column("last_seen", TZ, nullable=False),
    Column("seen_count", BigInteger, nullable=False, server_default="1"),
    PrimaryKeyConstraint("tenant", "user_name", "entity_type", "entity"),
)

peer_groups = Table(
    "peer_groups",
    metadata,
    tenant_column(),
    Column("id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("members", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("profile", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("tenant", "id"),
)

scoring_runs = Table(
    "scoring_runs",
    metadata,
    tenant_column(),
    Column("id", UUID(as_uuid=False), nullable=False, server_default=text("gen_random_uuid()")),
    Column("status", Text, nullable=False),
    Column("trigger", Text, nullable=False),
    Column("range_start", TZ, nullable=False),
    Column("range_end", TZ, nullable=False),
    Column("started_at", TZ, nullable=False, server_default=text("now()")),
    Column("finished_at", TZ),
    Column("figures", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("error", Text),
    PrimaryKeyConstraint("id"),
    Index(None, "tenant", "started_at"),
)

# Per user, hour and model: the event score and each feature's expected and
# observed value and share of the score. Partitioned by day on `hour`
# (migration 0010; partitions: ueba.store.partitions, written ahead by the
# scorer, dropped after UEBA_SCORE_RETENTION_DAYS).
event_scores = Table(
    "event_scores",
    metadata,
    tenant_column(),
    Column("user_name", Text, nullable=False),
    Column("hour", TZ, nullable=False),
    Column("model", Text, nullable=False),
    Column("score", SmallInteger, nullable=False),
    Column("features", JSONB, nullable=False),
    Column("learning", Boolean, nullable=False, server_default=text("false")),
    Column("run_id", UUID(as_uuid=False), nullable=False),
    PrimaryKeyConstraint("tenant", "user_name", "hour", "model"),
    Index(None, "tenant", "hour"),
    postgresql_partition_by="RANGE (hour)",
)

# The calibrated user-day score (models and rule findings, services/scorer/calibration.py).
user_scores = Table(
    "user_scores",
    metadata,
    tenant_column(),
    Column("user_name", Text, nullable=False),
    Column("day", Date, nullable=False),
    Column("score", Float, nullable=False),
    Column("scored_hours", Integer, nullable=False),
    Column("learning", Boolean, nullable=False, server_default=text("false")),
    Column("top_features", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("run_id", UUID(as_uuid=False), nullable=False),
    PrimaryKeyConstraint("tenant", "user_name", "day"),
    Index(None, "tenant", "day", "score"),
)

ignored_users = Table(
    "ignored_users",
    metadata,
    tenant_column(),
    Column("user_name", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("added_by", Text, nullable=False, server_default=""),
    Column("added_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("tenant", "user_name"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    tenant_column(),
    Column("id", UUID(as_uuid=False), nullable=False, server_default=text("gen_random_uuid()")),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("token_hash", Text, nullable=False),
    Column("created_by", Text, nullable=False, server_default=""),
    Column("created_at", TZ, nullable=False, server_default=text("now()")),
    Column("last_used_at", TZ),
    Column("revoked_at", TZ),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("token_hash"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), nullable=False),
    tenant_column(),
    Column("at", TZ, nullable=False, server_default=text("now()")),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False, server_default=""),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    PrimaryKeyConstraint("id"),
    Index(None, "tenant", "at"),
)

# --- profiles (migration 0002_profiles) ---

# Tailing events in commit order: the new rows are those whose txid is visible
# in the current snapshot but was not in the stored one.
Index(None, events.c.txid)

# The profiles evaluator's position: the pg_snapshot (text form) of everything
# it has processed. tenant '*' is the evaluator that serves every tenant.
profile_cursors = Table(
    "profile_cursors",
    metadata,
    tenant_column(),
    Column("consumer", Text, nullable=False),
    Column("snapshot", Text, nullable=False),
    Column("high_water", TZ),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("tenant", "consumer"),
)

# One row per tenant once its built-in profiles are seeded, so that seeding is
# idempotent and a deleted built-in profile stays deleted.
profile_seeds = Table(
    "profile_seeds",
    metadata,
    tenant_column(),
    Column("version", Integer, nullable=False),
    Column("seeded_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("tenant"),
)

# --- query service (migration 0004_query) ---

# Keyset pagination of anomalies in time order and in risk order.
Index("ix_anomalies_tenant_time_id", anomalies.c.tenant, anomalies.c.time, anomalies.c.id)
Index(
    "ix_anomalies_tenant_risk_score_time_id",
    anomalies.c.tenant,
    anomalies.c.risk_score,
    anomalies.c.time,
    anomalies.c.id,
)

# Anomaly counts and points per bucket ('hour' or 'day') and facet ('level',
# 'profile', 'dimension', 'status', 'source'). Statement triggers on anomalies
# append signed deltas (never update a shared row, so writers never wait on
# each other); the query service merges each bucket's deltas into one row per key.
anomaly_rollup = Table(
    "anomaly_rollup",
    metadata,
    tenant_column(),
    Column("grain", Text, nullable=False),
    Column("bucket", TZ, nullable=False),
    Column("facet", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("anomalies", BigInteger, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("merged", Boolean, nullable=False, server_default=text("false")),
    Index("ix_anomaly_rollup_tenant_grain_bucket", "tenant", "grain", "bucket"),
    Index("ix_anomaly_rollup_unmerged", "tenant", "grain", "bucket", postgresql_where=text("NOT merged")),
)

# Events per hour, appended as deltas by a statement trigger on events.
event_counts = Table(
    "event_counts",
    metadata,
    tenant_column(),
    Column("hour", TZ, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("merged", Boolean, nullable=False, server_default=text("false")),
    Index("ix_event_counts_tenant_hour", "tenant", "hour"),
    Index("ix_event_counts_unmerged", "tenant", "hour", postgresql_where=text("NOT merged")),
)

# Each user's current risk (ueba.risk over the open anomalies in the risk
# window), kept by the query service; a row only while the user has any.
user_risk = Table(
    "user_risk",
    metadata,
    tenant_column(),
    Column("user_name", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("risk", SmallInteger, nullable=False),
    Column("open_anomalies", Integer, nullable=False),
    Column("oldest_open", TZ),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("tenant", "user_name"),
    Index("ix_user_risk_tenant_risk_points_user_name", "tenant", "risk", "points", "user_name"),
    Index("ix_user_risk_tenant_oldest_open", "tenant", "oldest_open"),
)

# Users whose anomalies changed since their user_risk row was computed
# (appended by the anomalies triggers, consumed by the query service).
user_risk_dirty = Table(
    "user_risk_dirty",
    metadata,
    tenant_column(),
    Column("user_name", Text, nullable=False),
    Index("ix_user_risk_dirty_tenant", "tenant"),
)

# --- query service speed (migration 0007_query_speed) ---

# Index-only reads for the summary's bucket ranges, a user's open anomalies and events per hour.
Index(
    "ix_anomaly_rollup_buckets_covering",
    anomaly_rollup.c.tenant,
    anomaly_rollup.c.grain,
    anomaly_rollup.c.bucket,
    postgresql_include=["facet", "key", "anomalies", "points"],
)
Index(
    "ix_anomalies_open_by_user",
    anomalies.c.tenant,
    anomalies.c.user_name,
    anomalies.c.time,
    postgresql_include=["risk_score", "profile_name"],
    postgresql_where=text("status = 'new'"),
)
Index("ix_event_counts_hours_covering", event_counts.c.tenant, event_counts.c.hour, postgresql_include=["events"])
# The risk timeline's buckets, index-only (migration 0013_risk_timeline_covering; it replaced the plain (tenant, time)).
Index("ix_anomalies_tenant_time_covering", anomalies.c.tenant, anomalies.c.time,
      postgresql_include=["user_name", "risk_score", "status"])
# Description search (ILIKE '%text%') through trigrams: made by migration 0018 only where the
# server has pg_trgm, so it is not declared here (the embedded server lacks the extension).
DESCRIPTION_TRIGRAM_INDEX = "ix_anomalies_description_trgm"
OPTIONAL_INDEXES = {DESCRIPTION_TRIGRAM_INDEX}

# Per tenant, bumped by every rollup merge (and by TRUNCATE anomalies) in its own
# transaction: with the count of unmerged deltas, the version of the rollup
# totals that the query service's summary cache checks.
query_rollup_versions = Table(
    "query_rollup_versions",
    metadata,
    tenant_column(),
    Column("generation", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant"),
)

# Each whole hour's anomalies, points and distinct accounts, false positives and suppressed
# findings left out (migration 0016): recomputed by the query service's rollup merge for the
# hours whose deltas it merges, so an hour without unmerged 'hour' deltas is current here.
risk_hour_totals = Table(
    "risk_hour_totals",
    metadata,
    tenant_column(),
    Column("hour", TZ, nullable=False),
    Column("anomalies", BigInteger, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("accounts", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant", "hour"),
)

# --- hash-bucket leases of profiles and scorer replicas (migration 0008_work_leases) ---

# Tables that describe the deployment rather than a tenant's data (test_store exempts them
# from carrying `tenant`): a lease covers the users of every tenant in its bucket.
TENANT_INDEPENDENT = {"work_leases", "work_lease_members"}

# One row per (pool, bucket): who holds it until when. `token` grows on every change of
# hands; a worker compares it in its write transaction (fencing). `buckets` is the
# pool's N, so that replicas configured with another N refuse to start.
work_leases = Table(
    "work_leases",
    metadata,
    Column("pool", Text, nullable=False),
    Column("bucket", Integer, nullable=False),
    Column("buckets", Integer, nullable=False),
    Column("owner", Text),
    Column("token", BigInteger, nullable=False, server_default=text("0")),
    Column("expires_at", TZ, nullable=False, server_default=text("now()")),
    Column("heartbeat_at", TZ),
    PrimaryKeyConstraint("pool", "bucket"),
)

# The live replicas of a pool (renewed with their leases): the fair share is
# ceil(N / live members), which also counts a replica that holds nothing yet.
work_lease_members = Table(
    "work_lease_members",
    metadata,
    Column("pool", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("joined_at", TZ, nullable=False, server_default=text("now()")),
    Column("expires_at", TZ, nullable=False),
    PrimaryKeyConstraint("pool", "owner"),
)

# The scorer's feature cursor per tenant: the snapshot of the last committed
# aggregation (services/scorer/features.py), written in the same transaction.
scorer_cursors = Table(
    "scorer_cursors",
    metadata,
    tenant_column(),
    Column("snapshot", Text, nullable=False),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
    # Grows whenever an aggregation changed the tenant's features (the snapshot moves on
    # every run): the state of the data that shared baselines are keyed by (0009).
    Column("features_version", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("tenant"),
)

# Per tenant and bucket, the last scheduled fire time scored, written in the
# scoring transaction under the lease fence: each fire scores each bucket once.
scorer_buckets = Table(
    "scorer_buckets",
    metadata,
    tenant_column(),
    Column("bucket", Integer, nullable=False),
    Column("scheduled_at", TZ, nullable=False),
    Column("run_id", UUID(as_uuid=False), nullable=False),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("tenant", "bucket"),
)

# Per-user baselines one scorer replica loaded for its buckets, read by the other
# replicas of the same fire instead of loading them again (migration 0009_scorer_baselines):
# here the users and their behaviour profiles, the arrays in scorer_baseline_buckets.
# `state` names the data they were computed from (services/scorer/baseline_share.py).
scorer_baselines = Table(
    "scorer_baselines",
    metadata,
    tenant_column(),
    Column("state", Text, nullable=False),
    Column("run_id", UUID(as_uuid=False), nullable=False),
    Column("n", Integer, nullable=False),
    Column("buckets", ARRAY(Integer), nullable=False),
    Column("users", ARRAY(Text), nullable=False),
    Column("arrays", LargeBinary, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("tenant", "state", "buckets"),
)

# One bucket's baseline arrays of such a publication, so that a replica reads the other
# buckets one at a time (migration 0011_scorer_baseline_buckets).
scorer_baseline_buckets = Table(
    "scorer_baseline_buckets",
    metadata,
    tenant_column(),
    Column("state", Text, nullable=False),
    Column("n", Integer, nullable=False),
    Column("bucket", Integer, nullable=False),
    Column("arrays", LargeBinary, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("tenant", "state", "n", "bucket"),
)

# --- entities and incidents (migration 0012_entities_incidents) ---

Index(None, anomalies.c.tenant, anomalies.c.entity_type, anomalies.c.entity, anomalies.c.time)
Index(None, anomalies.c.tenant, anomalies.c.incident_id)

# One activity: the findings about one entity of one kind whose windows overlap or
# touch (the rule: ueba/store/anomalies.py, docs/architecture.md "Incidents").
incidents = Table(
    "incidents",
    metadata,
    tenant_column(),
    Column("id", UUID(as_uuid=False), nullable=False, server_default=text("gen_random_uuid()")),
    Column("entity_type", Text, nullable=False),
    Column("entity", Text, nullable=False),
    Column("kind", Text, nullable=False),  # the profile kind or model of its first finding
    Column("dimension", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("first_seen", TZ, nullable=False),
    Column("last_seen", TZ, nullable=False),
    Column("event_count", BigInteger, nullable=False, server_default="0"),
    Column("risk_score", SmallInteger, nullable=False),  # the strongest finding's
    Column("anomaly_count", Integer, nullable=False, server_default="0"),
    Column("status", Text, nullable=False, server_default="new"),
    Column("evidence", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("reviewed_by", Text),
    Column("reviewed_at", TZ),
    Column("review_comment", Text),
    Column("created_at", TZ, nullable=False, server_default=text("now()")),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id"),
    Index(None, "tenant", "entity_type", "entity", "last_seen"),
    Index(None, "tenant", "last_seen", "id"),
    Index(None, "tenant", "risk_score", "last_seen", "id"),
)

# The current risk of each address and host (accounts keep user_risk), kept like
# user_risk by the query service from the rows the anomaly triggers mark dirty.
entity_risk = Table(
    "entity_risk",
    metadata,
    tenant_column(),
    Column("entity_type", Text, nullable=False),
    Column("entity", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("risk", SmallInteger, nullable=False),
    Column("open_anomalies", Integer, nullable=False),
    Column("oldest_open", TZ),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("tenant", "entity_type", "entity"),
    Index(None, "tenant", "risk", "points", "entity"),
    Index(None, "tenant", "oldest_open"),
)

entity_risk_dirty = Table(
    "entity_risk_dirty",
    metadata,
    tenant_column(),
    Column("entity_type", Text, nullable=False),
    Column("entity", Text, nullable=False),
    Index(None, "tenant"),
)

# --- cases and suppression rules (migration 0013_cases_suppression) ---

cases = Table(
    "cases",
    metadata,
    tenant_column(),
    Column("id", UUID(as_uuid=False), nullable=False, server_default=text("gen_random_uuid()")),
    Column("title", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="new"),  # new, in_progress, closed
    Column("close_reason", Text),  # true_positive, benign, false_positive
    Column("severity", Text, nullable=False),  # a risk level
    Column("owner", Text, nullable=False, server_default=""),
    Column("created_by", Text, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=text("now()")),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
    Column("closed_at", TZ),
    PrimaryKeyConstraint("id"),
    Index(None, "tenant", "updated_at", "id"),
)

# An incident belongs to at most one case.
case_incidents = Table(
    "case_incidents",
    metadata,
    tenant_column(),
    Column("case_id", UUID(as_uuid=False), nullable=False),
    Column("incident_id", UUID(as_uuid=False), nullable=False),
    PrimaryKeyConstraint("tenant", "incident_id"),
    Index(None, "tenant", "case_id"),
)

# A case's timeline: every change with its actor; comments are entries of kind 'comment'.
case_entries = Table(
    "case_entries",
    metadata,
    Column("id", BigInteger, Identity(), nullable=False),
    tenant_column(),
    Column("case_id", UUID(as_uuid=False), nullable=False),
    Column("at", TZ, nullable=False, server_default=text("now()")),
    Column("actor", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("text", Text, nullable=False, server_default=""),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    PrimaryKeyConstraint("id"),
    Index(None, "tenant", "case_id", "id"),
)

suppression_rules = Table(
    "suppression_rules",
    metadata,
    tenant_column(),
    Column("id", UUID(as_uuid=False), nullable=False, server_default=text("gen_random_uuid()")),
    Column("action", Text, nullable=False),  # suppress, down_weight
    Column("weight", Float, nullable=False),  # 0 for suppress
    Column("entity_type", Text),
    Column("entity", Text),
    Column("profile", Text),
    Column("cidr", Text),
    Column("query", Text),
    Column("reason", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=text("now()")),
    Column("expires_at", TZ),
    Column("deleted_at", TZ),
    Column("deleted_by", Text),
    PrimaryKeyConstraint("id"),
    Index(None, "tenant", "created_at"),
)

# The transactional outbox (ueba/store/outbox.py): one row per finding, incident change or risk
# level crossing, written in the transaction that made it, so a rolled-back finding is never
# announced and a committed one always is. `document` is what every destination receives
# (docs/integrations.md); `event_id` is its idempotency key; `routed` turns true once the
# delivery service has created the row's deliveries.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    tenant_column(),
    Column("event_id", UUID(as_uuid=False), nullable=False),
    Column("kind", Text, nullable=False),  # rule, model, incident, risk
    Column("action", Text, nullable=False),
    Column("entity_type", Text, nullable=False),
    Column("entity", Text, nullable=False),
    Column("risk_score", SmallInteger, nullable=False),
    Column("document", JSONB, nullable=False),
    Column("routed", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", TZ, nullable=False, server_default=text("clock_timestamp()")),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("event_id"),
    Index(None, "routed", "id"),
    Index(None, "created_at"),
)

# One outbox row's delivery to one configured destination: pending (waiting for its
# next attempt, or leased by a worker until lease_until), delivered, or dead (given up).
deliveries = Table(
    "deliveries",
    metadata,
    Column("outbox_id", BigInteger, ForeignKey("outbox.id", ondelete="CASCADE"), nullable=False),
    Column("destination", Text, nullable=False),
    tenant_column(),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", TZ, nullable=False, server_default=text("now()")),
    Column("lease_owner", Text),
    Column("lease_until", TZ),
    Column("last_error", Text),
    Column("created_at", TZ, nullable=False, server_default=text("now()")),
    Column("delivered_at", TZ),
    PrimaryKeyConstraint("outbox_id", "destination"),
    Index(None, "destination", "status", "next_attempt_at"),
    Index(None, "destination", "delivered_at"),
    Index(None, "status", "outbox_id"),
)
