"""Anomaly rows that Postgres builds as JSON arrays, so a hot call is one statement with little Python per row."""

from __future__ import annotations

# The order convert.anomaly_from_json unpacks.
ANOMALY_FIELDS = (
    "id", "user_name", "source", "profile_id", "profile_name", "profile_kind", "risk_score", "description", "dimension",
    "time", "window_start", "window_end", "status", "evidence", "created_at", "reviewed_by", "reviewed_at", "review_comment",
    "entity_type", "entity", "incident_id", "suppressed_by", "original_score",
)
_TIMES = {"time", "window_start", "window_end", "created_at", "reviewed_at"}


def epoch_us(column: str) -> str:
    """SQL for a timestamptz column as integer microseconds since the epoch (exact, and cheap to turn into a Timestamp)."""
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def anomaly_json_sql(table: str = "anomalies") -> str:
    """SQL for one anomaly row of `table` as a JSON array in ANOMALY_FIELDS order."""
    parts = [epoch_us(f"{table}.{f}") if f in _TIMES else f"{table}.{f}" for f in ANOMALY_FIELDS]
    return "json_build_array(" + ", ".join(parts) + ")"
