"""Rows to messages and message fields to Python values."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any, Mapping

from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from services.query.errors import InvalidArgument
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
