"""One batch of protobuf events -> validated, normalised rows ready for COPY.

This is the ingest hot path: it runs once per event at tens of thousands of
events a second on one core, so the checks read each field once into a local
and fast-path the common case (short, clean strings) before looking closer.
An event that fails a check becomes a Rejection naming its index, field and
reason; the rest of the batch carries on.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Sequence

from services.ingest.normalise import NO_GEO, AddressBook
from ueba.v1 import common_pb2, ingest_pb2

# Column order of every row this module produces (and of the COPY statement).
COLUMNS = (
    "tenant",
    "event_id",
    "time",
    "user_name",
    "event_type",
    "outcome",
    "source_ip",
    "source_host",
    "destination_host",
    "destination_ip",
    "application",
    "country",
    "city",
    "latitude",
    "longitude",
    "bytes",
    "file_count",
    "object",
    "department",
    "user_agent",
    "action",
    "failure_reason",
    "producer",
    "logon_type",
    "trusted_source",
    "attributes",
)

EVENT_TYPES: dict[int, str] = {
    value: name[len("EVENT_TYPE_"):].lower()
    for name, value in common_pb2.EventType.items()
    if value != common_pb2.EVENT_TYPE_UNSPECIFIED
}
OUTCOMES: dict[int, str] = {
    common_pb2.OUTCOME_UNSPECIFIED: "unspecified",
    common_pb2.OUTCOME_SUCCESS: "success",
    common_pb2.OUTCOME_FAILURE: "failure",
}
# String fields checked for length and NUL (Postgres text cannot hold NUL).
STRING_FIELDS = (
    "event_id",
    "user",
    "source_ip",
    "source_host",
    "destination_host",
    "destination_ip",
    "application",
    "object",
    "department",
    "user_agent",
    "action",
    "failure_reason",
    "producer",
)
SMALLINT_MAX = 32767
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DAY = 86400


def derived_event_id(event: common_pb2.Event) -> str:
    """A stable id for an event sent without one: the hash of its canonical serialisation.

    Deterministic serialisation orders map entries, so the same content gives
    the same id in every process and on every retry.
    """
    return "h" + hashlib.blake2b(event.SerializeToString(deterministic=True), digest_size=16).hexdigest()


@dataclass
class UserSighting:
    first_seen: datetime
    last_seen: datetime
    department: str | None


@dataclass
class PreparedBatch:
    rows: list[tuple] = field(default_factory=list)
    rejections: list[ingest_pb2.Rejection] = field(default_factory=list)
    duplicates: int = 0  # repeats of an earlier event in the same batch
    users: dict[str, UserSighting] = field(default_factory=dict)
    days: set[date] = field(default_factory=set)


@dataclass(frozen=True)
class Limits:
    max_future_seconds: int = 900
    max_past_days: int = 400
    retention_days: int = 0
    max_field_length: int = 2048
    max_attributes: int = 64

    def time_bounds(self, now: float) -> tuple[float, float, str]:
        """(earliest, latest) accepted epoch seconds, and why the earliest is what it is."""
        latest = now + self.max_future_seconds if self.max_future_seconds else math.inf
        earliest, why = -math.inf, ""
        if self.max_past_days:
            earliest, why = now - self.max_past_days * _DAY, f"more than {self.max_past_days} days in the past"
        if self.retention_days:
            # Retention drops whole days: the oldest kept day starts at midnight UTC.
            kept_from = (int(now) // _DAY - self.retention_days) * _DAY
            if kept_from > earliest:
                earliest, why = kept_from, f"older than the {self.retention_days}-day retention period"
        return earliest, latest, why


class EventPreparer:
    def __init__(self, limits: Limits, canonical_user: Callable[[str], str], addresses: AddressBook):
        self.limits = limits
        self.canonical_user = canonical_user
        self.addresses = addresses

    def prepare(self, tenant: str, events: Sequence[common_pb2.Event], now: float | None = None) -> PreparedBatch:
        limits = self.limits
        max_len = limits.max_field_length
        max_attributes = limits.max_attributes
        earliest, latest, too_old = limits.time_bounds(time.time() if now is None else now)
        canonical_user = self.canonical_user
        lookup = self.addresses.lookup
        batch = PreparedBatch()
        rows, users, seen = batch.rows, batch.users, set()
        day_numbers: set[int] = set()
        rejections = batch.rejections
        Rejection = ingest_pb2.Rejection

        for index, ev in enumerate(events):
            event_id = ev.event_id
            raw_user = ev.user
            source_ip = ev.source_ip
            source_host = ev.source_host
            destination_host = ev.destination_host
            destination_ip = ev.destination_ip
            application = ev.application
            obj = ev.object
            department = ev.department
            user_agent = ev.user_agent
            action = ev.action
            failure_reason = ev.failure_reason
            producer = ev.producer
            strings = (event_id, raw_user, source_ip, source_host, destination_host, destination_ip, application,
                       obj, department, user_agent, action, failure_reason, producer)  # fmt: skip
            joined = "".join(strings)
            if len(joined) > max_len or "\x00" in joined:
                problem = _string_problem(strings, max_len)
                if problem is not None:
                    rejections.append(Rejection(index=index, field=problem[0], reason=problem[1], event_id=event_id))
                    continue

            if not raw_user.strip():
                rejections.append(Rejection(index=index, field="user", reason="missing", event_id=event_id))
                continue
            user = canonical_user(raw_user)
            if not user:
                rejections.append(Rejection(index=index, field="user", reason="no account name left after removing the domain", event_id=event_id))  # fmt: skip
                continue
            if not ev.HasField("time"):
                rejections.append(Rejection(index=index, field="time", reason="missing", event_id=event_id))
                continue
            ts = ev.time
            seconds = ts.seconds
            if seconds > latest:
                reason = f"more than {limits.max_future_seconds} seconds in the future"
                rejections.append(Rejection(index=index, field="time", reason=reason, event_id=event_id))
                continue
            if seconds < earliest:
                rejections.append(Rejection(index=index, field="time", reason=too_old, event_id=event_id))
                continue
            event_type = EVENT_TYPES.get(ev.type)
            if event_type is None:
                reason = "missing" if ev.type == 0 else f"unknown value {ev.type}"
                rejections.append(Rejection(index=index, field="type", reason=reason, event_id=event_id))
                continue
            outcome = OUTCOMES.get(ev.outcome)
            if outcome is None:
                reason = f"unknown value {ev.outcome}"
                rejections.append(Rejection(index=index, field="outcome", reason=reason, event_id=event_id))
                continue
            n_bytes = ev.bytes
            file_count = ev.file_count
            logon_type = ev.logon_type
            if n_bytes < 0 or file_count < 0 or not 0 <= logon_type <= SMALLINT_MAX:
                name = "bytes" if n_bytes < 0 else "file_count" if file_count < 0 else "logon_type"
                reason = "must not be negative" if name != "logon_type" or logon_type < 0 else f"above {SMALLINT_MAX}"
                rejections.append(Rejection(index=index, field=name, reason=reason, event_id=event_id))
                continue

            trusted = False
            geo = NO_GEO
            if source_ip:
                address = lookup(source_ip)
                if address is None:
                    rejections.append(Rejection(index=index, field="source_ip", reason="not an IP address", event_id=event_id))  # fmt: skip
                    continue
                source_ip = address.text
                trusted = address.trusted
                geo = address.geo
            else:
                source_ip = None
            if destination_ip:
                address = lookup(destination_ip)
                if address is None:
                    rejections.append(Rejection(index=index, field="destination_ip", reason="not an IP address", event_id=event_id))  # fmt: skip
                    continue
                destination_ip = address.text
            else:
                destination_ip = None

            country, city, latitude, longitude = geo.country, geo.city, geo.latitude, geo.longitude
            if ev.HasField("geo"):
                own = ev.geo
                has_coordinates = own.has_coordinates or own.latitude != 0.0 or own.longitude != 0.0
                if own.country_code or own.city or has_coordinates:
                    # The event's own location wins over the database's, whole: a
                    # mix of the two could place a city in the wrong country.
                    problem = _geo_problem(own, has_coordinates, max_len)
                    if problem is not None:
                        rejections.append(Rejection(index=index, field=problem[0], reason=problem[1], event_id=event_id))
                        continue
                    country = own.country_code.upper() or None
                    city = own.city or None
                    latitude = own.latitude if has_coordinates else None
                    longitude = own.longitude if has_coordinates else None

            attributes = None
            if ev.attributes:
                attrs = dict(ev.attributes)
                if len(attrs) > max_attributes:
                    reason = f"more than {max_attributes} entries"
                    rejections.append(Rejection(index=index, field="attributes", reason=reason, event_id=event_id))
                    continue
                problem = _attributes_problem(attrs, max_len)
                if problem is not None:
                    rejections.append(Rejection(index=index, field="attributes", reason=problem, event_id=event_id))
                    continue
                attributes = json.dumps(attrs, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

            if not event_id:
                event_id = derived_event_id(ev)
            micros = ts.nanos // 1000
            key = (event_id, seconds, micros)
            if key in seen:
                batch.duplicates += 1
                continue
            seen.add(key)
            when = _EPOCH + timedelta(seconds=seconds, microseconds=micros)
            day_numbers.add(seconds // _DAY)
            department = department or None
            sighting = users.get(user)
            if sighting is None:
                users[user] = UserSighting(when, when, department)
            else:
                if when < sighting.first_seen:
                    sighting.first_seen = when
                if when >= sighting.last_seen:
                    sighting.last_seen = when
                    if department:
                        sighting.department = department
                elif department and sighting.department is None:
                    sighting.department = department

            rows.append((
                tenant, event_id, when, user, event_type, outcome, source_ip, source_host or None,
                destination_host or None, destination_ip, application or None, country, city, latitude, longitude,
                n_bytes, file_count, obj or None, department, user_agent or None, action or None,
                failure_reason or None, producer or None, logon_type or None, trusted, attributes,
            ))  # fmt: skip

        batch.days = {_day(n) for n in day_numbers}
        return batch


def _day(day_number: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day_number)


def _string_problem(strings: tuple[str, ...], max_len: int) -> tuple[str, str] | None:
    for name, value in zip(STRING_FIELDS, strings):
        if len(value) > max_len:
            return name, f"longer than {max_len} characters"
        if "\x00" in value:
            return name, "contains a NUL character"
    return None


def _geo_problem(geo: common_pb2.GeoLocation, has_coordinates: bool, max_len: int) -> tuple[str, str] | None:
    code = geo.country_code
    if code and not (len(code) == 2 and code.isascii() and code.isalpha()):
        return "geo.country_code", "expected an ISO 3166-1 alpha-2 code"
    if len(geo.city) > max_len:
        return "geo.city", f"longer than {max_len} characters"
    if "\x00" in geo.city:
        return "geo.city", "contains a NUL character"
    if has_coordinates:
        # Written so that NaN fails too.
        if not -90.0 <= geo.latitude <= 90.0:
            return "geo.latitude", "outside -90..90"
        if not -180.0 <= geo.longitude <= 180.0:
            return "geo.longitude", "outside -180..180"
    return None


def _attributes_problem(attrs: dict[str, str], max_len: int) -> str | None:
    for key, value in attrs.items():
        if not key:
            return "empty key"
        if len(key) > max_len or len(value) > max_len:
            return f"entry {key[:64]!r} longer than {max_len} characters"
        if "\x00" in key or "\x00" in value:
            return f"entry {key[:64]!r} contains a NUL character"
    return None
