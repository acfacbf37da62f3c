"""One batch of protobuf events -> validated, normalised rows ready for binary COPY.

This is the ingest hot path: it runs once per event at tens of thousands of
events a second on one core, so the checks read each field once into a local
and fast-path the common case (short, clean strings) before looking closer.
An event that fails a check becomes a Rejection naming its index, field and
reason; the rest of the batch carries on.

Rows are in the form `COPY ... (FORMAT BINARY)` sends, with COPY_TYPES as the
psycopg dumpers (see COPY_TYPES for the three columns sent pre-encoded).
`decode_row` turns one back into plain Python values, for tests and tools.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterable, Sequence

from services.ingest.normalise import NO_GEO, AddressBook
from ueba.parsers.base import names_its_source
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

# Binary COPY wire types, column by column. Three columns are sent already in
# Postgres' binary format of their real type, which is cheaper than building a
# Python object only for psycopg to take it apart again (measured: the row
# costs about a fifth of the text format):
#   time: timestamptz's binary form is int8 microseconds since 2000-01-01 UTC;
#   source_ip, destination_ip: inet's binary form (family, bits, is_cidr, length, address), as bytes;
#   attributes: jsonb's binary form (version byte 1, then the JSON text), as bytes.
COPY_TYPES = (
    "text", "text", "int8", "text", "text", "text", "bytea", "text", "text", "bytea", "text", "text", "text",
    "float8", "float8", "int8", "int4", "text", "text", "text", "text", "text", "text", "int2", "bool", "bytea",
)  # fmt: skip
PG_EPOCH_MICROS = 946_684_800 * 1_000_000  # 2000-01-01 in Unix microseconds
JSONB_VERSION = b"\x01"

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
    "geo.city",
)
SMALLINT_MAX = 32767
UTC = timezone.utc
_DAY = 86400
# Python's datetime range (years 1 to 9999), within Postgres' timestamptz range.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799


def derived_event_id(event: common_pb2.Event) -> str:
    """A stable id for an event sent without one: the hash of its canonical serialisation.

    Deterministic serialisation orders map entries, so the same content gives
    the same id in every process and on every retry.
    """
    return "h" + hashlib.blake2b(event.SerializeToString(deterministic=True), digest_size=16).hexdigest()


@dataclass
class PreparedBatch:
    rows: list[tuple] = field(default_factory=list)
    rejections: list[ingest_pb2.Rejection] = field(default_factory=list)
    duplicates: int = 0  # repeats of an earlier event in the same batch
    # user -> [first seen, last seen (epoch microseconds), department of the latest event with one]
    users: dict[str, list] = field(default_factory=dict)
    days: set[date] = field(default_factory=set)


def merged_users(batches: Iterable[PreparedBatch]) -> dict[str, list]:
    """The user sightings of several batches as one batch's `users` would hold them."""
    merged: dict[str, list] = {}
    for batch in batches:
        for user, (first, last, department) in batch.users.items():
            sighting = merged.get(user)
            if sighting is None:
                merged[user] = [first, last, department]
                continue
            if first < sighting[0]:
                sighting[0] = first
            if last >= sighting[1]:
                sighting[1] = last
                sighting[2] = department or sighting[2]
            elif sighting[2] is None:
                sighting[2] = department
    return merged


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
        too_new = f"more than {limits.max_future_seconds} seconds in the future"
        # One range test per event; _time_rejected tells which bound failed.
        first_second, last_second = max(earliest, _MIN_SECONDS), min(latest, _MAX_SECONDS)
        canonical_user = self.canonical_user
        lookup = self.addresses.lookup
        batch = PreparedBatch()
        rows, users, rejections = batch.rows, batch.users, batch.rejections
        seen: set[tuple[str, int, int]] = set()
        day_numbers: set[int] = set()
        day_start = day_end = 0  # the last day added to day_numbers, in epoch seconds
        # Per-batch memos: a batch repeats a few hundred names and addresses, and a dict
        # look-up inline costs a fraction of a call to the (cached) function.
        user_of: dict[str, str] = {}
        address_of: dict[str, tuple | None] = {}

        for index, ev in enumerate(events):
            event_id = ev.event_id
            try:
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
                geo = ev.geo
                city = geo.city
                # One length and one NUL check over all strings together; only a
                # batch with a suspect event pays for the field-by-field look.
                strings = (event_id, raw_user, source_ip, source_host, destination_host, destination_ip,
                           application, obj, department, user_agent, action, failure_reason, producer, city)  # fmt: skip
                joined = "".join(strings)
                if len(joined) > max_len or "\x00" in joined:
                    _check_strings(strings, max_len)

                user = user_of.get(raw_user)
                if user is None:
                    user = user_of[raw_user] = canonical_user(raw_user)
                if not user and not names_its_source(ev):
                    raise _Rejected("user", _NO_ACCOUNT if not raw_user.strip() else "no account name left after removing the domain")  # fmt: skip

                ts = ev.time
                seconds = ts.seconds
                nanos = ts.nanos
                if not (first_second <= seconds <= last_second and 0 <= nanos < 1_000_000_000 and (seconds or nanos)):
                    raise _time_rejected(seconds, nanos, earliest, latest, too_old, too_new)

                event_type = EVENT_TYPES.get(ev.type)
                if event_type is None:
                    raise _Rejected("type", "missing" if ev.type == 0 else f"unknown value {ev.type}")
                outcome = OUTCOMES.get(ev.outcome)
                if outcome is None:
                    raise _Rejected("outcome", f"unknown value {ev.outcome}")
                n_bytes = ev.bytes
                file_count = ev.file_count
                logon_type = ev.logon_type
                if n_bytes < 0 or file_count < 0 or not 0 <= logon_type <= SMALLINT_MAX:
                    raise _count_rejected(n_bytes, file_count, logon_type)

                trusted = False
                located = NO_GEO
                if source_ip:
                    try:
                        address = address_of[source_ip]
                    except KeyError:
                        address = address_of[source_ip] = lookup(source_ip)
                    if address is None:
                        raise _Rejected("source_ip", "not an IP address")
                    _, source_ip, trusted, located = address
                else:
                    source_ip = None
                if destination_ip:
                    address = lookup(destination_ip)
                    if address is None:
                        raise _Rejected("destination_ip", "not an IP address")
                    destination_ip = address.wire
                else:
                    destination_ip = None

                code = geo.country_code
                latitude = geo.latitude
                longitude = geo.longitude
                has_coordinates = geo.has_coordinates or latitude != 0.0 or longitude != 0.0
                if code or city or has_coordinates:
                    # The event's own location wins over the database's, whole: a
                    # mix of the two could place a city in the wrong country.
                    if code:
                        code = _COUNTRY_CODES.get(code) or _country_code(code)
                    if has_coordinates:
                        # Written so that NaN fails too.
                        if not -90.0 <= latitude <= 90.0:
                            raise _Rejected("geo.latitude", "outside -90..90")
                        if not -180.0 <= longitude <= 180.0:
                            raise _Rejected("geo.longitude", "outside -180..180")
                    else:
                        latitude = longitude = None
                    country = code or None
                    city = city or None
                else:
                    country, city, latitude, longitude = located

                attributes = None
                if ev.attributes:
                    attributes = _encode_attributes(ev.attributes, max_attributes, max_len)
            except _Rejected as rejected:
                rejections.append(
                    ingest_pb2.Rejection(index=index, field=rejected.field, reason=rejected.reason, event_id=event_id)
                )
                continue

            if not event_id:
                event_id = derived_event_id(ev)
            micros = nanos // 1000
            key = (event_id, seconds, micros)
            if key in seen:
                batch.duplicates += 1
                continue
            seen.add(key)
            if not day_start <= seconds < day_end:
                day_start = seconds - seconds % _DAY
                day_end = day_start + _DAY
                day_numbers.add(day_start // _DAY)
            department = department or None
            when_us = seconds * 1_000_000 + micros
            sighting = users.get(user)
            if sighting is None:
                if user:  # a failure that names no account is its source's: no account to record
                    users[user] = [when_us, when_us, department]
            else:
                if when_us < sighting[0]:
                    sighting[0] = when_us
                if when_us >= sighting[1]:
                    sighting[1] = when_us
                    if department:
                        sighting[2] = department
                elif department and sighting[2] is None:
                    sighting[2] = department

            rows.append((
                tenant, event_id, when_us - PG_EPOCH_MICROS, user, event_type, outcome, source_ip, source_host or None,
                destination_host or None, destination_ip, application or None, country, city, latitude, longitude,
                n_bytes, file_count, obj or None, department, user_agent or None, action or None,
                failure_reason or None, producer or None, logon_type or None, trusted, attributes,
            ))  # fmt: skip

        batch.days = {_day(n) for n in day_numbers}
        return batch


_NO_ACCOUNT = "missing (only a failure with a source_ip or source_host may name no account)"


# Valid country codes as sent -> as stored, filled as they are met (at most 52 x 52 spellings).
_COUNTRY_CODES: dict[str, str] = {}


def _country_code(code: str) -> str:
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        raise _Rejected("geo.country_code", "expected an ISO 3166-1 alpha-2 code")
    upper = _COUNTRY_CODES[code] = code.upper()
    return upper


class _Rejected(Exception):
    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason


def _time_rejected(seconds: int, nanos: int, earliest: float, latest: float, too_old: str, too_new: str) -> _Rejected:
    if not seconds and not nanos:
        return _Rejected("time", "missing")
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
        return _Rejected("time", "not a valid timestamp")
    return _Rejected("time", too_new if seconds > latest else too_old)


def _count_rejected(n_bytes: int, file_count: int, logon_type: int) -> _Rejected:
    if n_bytes < 0:
        return _Rejected("bytes", "must not be negative")
    if file_count < 0:
        return _Rejected("file_count", "must not be negative")
    return _Rejected("logon_type", f"outside 0..{SMALLINT_MAX}")


def _check_strings(strings: tuple[str, ...], max_len: int) -> None:
    for name, value in zip(STRING_FIELDS, strings):
        if len(value) > max_len:
            raise _Rejected(name, f"longer than {max_len} characters")
        if "\x00" in value:
            raise _Rejected(name, "contains a NUL character")


def _encode_attributes(attributes, max_attributes: int, max_len: int) -> bytes:
    """The attribute map as jsonb's binary form."""
    attrs = dict(attributes)
    if len(attrs) > max_attributes:
        raise _Rejected("attributes", f"more than {max_attributes} entries")
    for key, value in attrs.items():
        if not key:
            raise _Rejected("attributes", "empty key")
        if len(key) > max_len or len(value) > max_len:
            raise _Rejected("attributes", f"entry {key[:64]!r} longer than {max_len} characters")
        if "\x00" in key or "\x00" in value:
            raise _Rejected("attributes", f"entry {key[:64]!r} contains a NUL character")
    return JSONB_VERSION + json.dumps(attrs, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def decode_row(row: tuple) -> dict:
    """A prepared row as plain values (datetime, address text, attribute dict), keyed by column."""
    values = dict(zip(COLUMNS, row))
    values["time"] = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=values["time"])
    for name in ("source_ip", "destination_ip"):
        if values[name] is not None:
            values[name] = inet_text(values[name])
    if values["attributes"] is not None:
        values["attributes"] = json.loads(values["attributes"][1:])
    return values


def inet_text(wire: bytes) -> str:
    family = socket.AF_INET if wire[0] == 2 else socket.AF_INET6
    return socket.inet_ntop(family, wire[4:])


def _day(day_number: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day_number)
