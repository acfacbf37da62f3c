"""Rows to messages and message fields to Python values."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any, Mapping

from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from ueba.errors import InvalidArgument
from services.query.vocab import LEVEL_ENUM, SOURCE_ENUM, STATUS_ENUM
from ueba.risk import risk_level
from ueba.v1 import common_pb2, query_pb2


def timestamp(value: datetime | date | None) -> Timestamp | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), tzinfo=timezone.utc)
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(timezone.utc))
    return ts


def to_datetime(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=timezone.utc)


def time_range(message: Any, field: str = "range") -> tuple[datetime | None, datetime | None]:
    """(start, end) of a TimeRange field of `message`; unset bounds are None."""
    if not message.HasField(field):
        return None, None
    rng = getattr(message, field)
    start = to_datetime(rng.start) if rng.HasField("start") else None
    end = to_datetime(rng.end) if rng.HasField("end") else None
    if start is not None and end is not None and start >= end:
        raise InvalidArgument(f"{field}: start must be before end")
    return start, end


def range_message(start: datetime | None, end: datetime | None) -> common_pb2.TimeRange:
    return common_pb2.TimeRange(start=timestamp(start), end=timestamp(end))


def anomaly(row: Mapping[str, Any]) -> common_pb2.Anomaly:
    evidence = Struct()
    if row["evidence"]:
        evidence.update(row["evidence"])
    return common_pb2.Anomaly(
        id=str(row["id"]),
        user=row["user_name"],
        source=SOURCE_ENUM.get(row["source"], common_pb2.ANOMALY_SOURCE_UNSPECIFIED),
        profile_id=row["profile_id"],
        profile_name=row["profile_name"],
        profile_kind=row["profile_kind"],
        risk_score=row["risk_score"],
        risk_level=LEVEL_ENUM[risk_level(row["risk_score"])],
        description=row["description"],
        dimension=row["dimension"],
        time=timestamp(row["time"]),
        window_start=timestamp(row["window_start"]),
        window_end=timestamp(row["window_end"]),
        status=STATUS_ENUM.get(row["status"], common_pb2.ANOMALY_STATUS_UNSPECIFIED),
        evidence=evidence,
        created_at=timestamp(row["created_at"]),
        reviewed_by=row["reviewed_by"] or "",
        reviewed_at=timestamp(row["reviewed_at"]),
        review_comment=row["review_comment"] or "",
    )


def user_risk_message(user: str, points: int, risk: int, open_anomalies: int) -> common_pb2.UserRisk:
    return common_pb2.UserRisk(
        user=user,
        total_points=points,
        risk=risk,
        risk_level=LEVEL_ENUM[risk_level(risk)],
        open_anomalies=open_anomalies,
    )


def counts(pairs: Mapping[str, int] | list[tuple[str, int]]) -> list[query_pb2.Count]:
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return [query_pb2.Count(key=k, count=v) for k, v in items]


# --- rows that Postgres built as JSON arrays (one statement per call) ------------------

def epoch_us(column: str) -> str:
    """SQL for a timestamptz column as integer microseconds since the epoch (exact, and cheap to turn into a Timestamp)."""
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def timestamp_us(us: int | None) -> Timestamp | None:
    if us is None:
        return None
    seconds, micros = divmod(us, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


_ANOMALY_FIELDS = (
    "id", "user_name", "source", "profile_id", "profile_name", "profile_kind", "risk_score", "description", "dimension",
    "time", "window_start", "window_end", "status", "evidence", "created_at", "reviewed_by", "reviewed_at", "review_comment",
)
_TIMES = {"time", "window_start", "window_end", "created_at", "reviewed_at"}


def anomaly_json_sql(table: str = "anomalies") -> str:
    """SQL for one anomaly row of `table` as a JSON array in the order anomaly_from_json reads."""
    parts = [epoch_us(f"{table}.{f}") if f in _TIMES else f"{table}.{f}" for f in _ANOMALY_FIELDS]
    return "json_build_array(" + ", ".join(parts) + ")"


def anomaly_from_json(values: list) -> common_pb2.Anomaly:
    (id_, user, source, profile_id, profile_name, profile_kind, score, description, dimension,
     time_us, window_start, window_end, status, evidence, created_at, reviewed_by, reviewed_at, comment) = values
    message = common_pb2.Anomaly(
        id=id_,
        user=user,
        source=SOURCE_ENUM.get(source, common_pb2.ANOMALY_SOURCE_UNSPECIFIED),
        profile_id=profile_id,
        profile_name=profile_name,
        profile_kind=profile_kind,
        risk_score=score,
        risk_level=LEVEL_ENUM[risk_level(score)],
        description=description,
        dimension=dimension,
        time=timestamp_us(time_us),
        window_start=timestamp_us(window_start),
        window_end=timestamp_us(window_end),
        status=STATUS_ENUM.get(status, common_pb2.ANOMALY_STATUS_UNSPECIFIED),
        created_at=timestamp_us(created_at),
        reviewed_by=reviewed_by or "",
        reviewed_at=timestamp_us(reviewed_at),
        review_comment=comment or "",
    )
    if evidence:
        message.evidence.update(evidence)
    else:
        message.evidence.SetInParent()  # present and empty, as anomaly() gives
    return message
