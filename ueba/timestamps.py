"""Protobuf Timestamps to and from aware UTC datetimes, with the range the store accepts."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ueba.errors import InvalidArgument

# Wide enough for any log and any "since" a person types, narrow enough that
# adding a window or a retention period never overflows a datetime.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)
_NANOS = 1_000_000_000


def check_time(value: datetime, field: str) -> datetime:
    """`value` if it lies in [EARLIEST, LATEST); InvalidArgument naming `field` otherwise."""
    if not EARLIEST <= value < LATEST:
        raise InvalidArgument(f"{field}: {value.isoformat()} is outside {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}")
    return value


def from_proto(ts: Timestamp, field: str) -> datetime:
    """An aware UTC datetime; InvalidArgument naming `field` for malformed or out-of-range values."""
    if not 0 <= ts.nanos < _NANOS:
        raise InvalidArgument(f"{field}: nanos must be 0 to 999999999, got {ts.nanos}")
    if not EARLIEST.timestamp() <= ts.seconds < LATEST.timestamp():
        raise InvalidArgument(f"{field}: seconds {ts.seconds} is outside {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}")
    return ts.ToDatetime(tzinfo=timezone.utc)


def optional_from_proto(message: Any, name: str, field: str | None = None) -> datetime | None:
    """The datetime of Timestamp field `name` of `message`, or None when it is unset."""
    if not message.HasField(name):
        return None
    return from_proto(getattr(message, name), field or name)


def to_proto(value: datetime | date | None) -> Timestamp | None:
    """A Timestamp for an aware datetime (or a date, at UTC midnight); None stays None."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), tzinfo=timezone.utc)
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(timezone.utc))
    return ts


def time_range(message: Any, field: str = "range") -> tuple[datetime | None, datetime | None]:
    """(start, end) of TimeRange field `field` of `message`; unset bounds are None, start must precede end."""
    if not message.HasField(field):
        return None, None
    rng = getattr(message, field)
    start = optional_from_proto(rng, "start", f"{field}.start")
    end = optional_from_proto(rng, "end", f"{field}.end")
    if start is not None and end is not None and start >= end:
        raise InvalidArgument(f"{field}: start must be before end")
    return start, end
