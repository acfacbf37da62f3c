"""What every parser shares: the error type, options, and small field helpers.

A parser turns one record (a text line, or a mapping already decoded from
JSON or CSV) into zero or more `ueba.v1.common_pb2.Event`s, or raises
`ParseError` with a reason. Zero events means the record was understood and is
not about what accounts do (a kernel message, a process start); a record that
cannot be understood at all is an error, so that nothing is dropped silently.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from collections.abc import Mapping
from datetime import datetime, timezone, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from ueba.names import canonical_user
from ueba.v1 import common_pb2

Event = common_pb2.Event


class ParseError(ValueError):
    """A record that cannot be understood; the message says why."""


@dataclass(frozen=True)
class ParseOptions:
    """Context a record does not carry itself.

    year: for syslog timestamps without one (RFC 3164); None means the current
      year, rolled back one year for dates that would lie in the future.
    timezone: the zone of timestamps written without an offset.
    now: the reference time for the year roll-back (tests pin it).
    corroborating: also emit records that repeat an attempt another record of
      the same log already reports (sshd's PAM lines); off for shipping, on for
      counting what a log holds.
    """

    year: int | None = None
    timezone: tzinfo = timezone.utc
    now: datetime | None = None
    corroborating: bool = False

    def reference_now(self) -> datetime:
        return self.now or datetime.now(timezone.utc)


def zone(name: str) -> tzinfo:
    """A zone from an IANA name, 'UTC' or a fixed offset like '+02:00'."""
    if name.upper() in ("UTC", "Z", ""):
        return timezone.utc
    if name[0] in "+-" and ":" in name:
        hours, minutes = name[1:].split(":", 1)
        from datetime import timedelta

        delta = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(-delta if name[0] == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


class Parser(Protocol):
    name: str

    def parse(self, record: str | Mapping[str, Any]) -> list[Event]: ...


def stable_id(producer: str, *parts: Any) -> str:
    """A deterministic event id from the parts that make a record unique."""
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return f"{producer}:{h.hexdigest()[:32]}"


def record_hash_id(producer: str, record: Mapping[str, Any]) -> str:
    return stable_id(producer, json.dumps(record, sort_keys=True, default=str, ensure_ascii=False))



# A log names the same accounts over and over.
@functools.lru_cache(maxsize=65536)
def account_kind(raw_user: str) -> str | None:
    """Accounts that are not people: machine accounts end in `$`."""
    name = canonical_user(raw_user)
    if name.endswith("$"):
        return "machine"
    if name in ("anonymous logon", "anonymous"):
        return "anonymous"
    if name in ("system", "local service", "network service") or name.startswith(("dwm-", "umfd-")):
        return "builtin"
    return None


def set_user(event: Event, raw_user: str) -> None:
    """The account as the source names it; ingest canonicalises by its UEBA_USER_NAME_MODE."""
    event.user = (raw_user or "").strip()
    kind = account_kind(raw_user)
    if kind:
        event.attributes["account_kind"] = kind


def names_its_source(event: Event) -> bool:
    """Whether an event without an account may stand: a failure with a source address or host.

    A log that leaves out the name tried (a PAM failure without `user=`, a 4625
    with `-`) still tells who tried; the event is about that source, and no
    account is invented for it.
    """
    return event.outcome == common_pb2.OUTCOME_FAILURE and bool(event.source_ip or event.source_host)


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def clean_ip(value: Any) -> str:
    """An address as ingest stores it: IPv4-mapped IPv6 unwrapped, '-' and '' dropped."""
    text = str(value or "").strip().strip("[]")
    if not text or text == "-":
        return ""
    return _parsed_ip(text)


# A log names the same few thousand addresses over and over; parsing each anew was a fifth
# of the shipper's time.
@functools.lru_cache(maxsize=65536)
def _parsed_ip(text: str) -> str:
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)


def set_source(event: Event, value: Any) -> None:
    """An address goes to source_ip, a host name to source_host."""
    text = str(value or "").strip()
    if not text or text == "-":
        return
    ip = clean_ip(text)
    if ip:
        event.source_ip = ip
    else:
        event.source_host = text.lower()


def set_destination(event: Event, value: Any) -> None:
    text = str(value or "").strip()
    if not text or text == "-":
        return
    ip = clean_ip(text)
    if ip:
        event.destination_ip = ip
    else:
        event.destination_host = text.lower()


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def set_time(event: Event, when: datetime) -> None:
    if when.tzinfo is None:
        raise ParseError("time without a zone")
    # Timestamp.FromDatetime's calendar arithmetic in Python was a twentieth of the parse.
    since = when - _EPOCH
    stamp = event.time
    stamp.seconds = since.days * 86400 + since.seconds
    stamp.nanos = since.microseconds * 1000


def parse_iso_time(text: str, default_zone: tzinfo = timezone.utc) -> datetime:
    """ISO 8601 with or without an offset, 'Z', and up to 9 fraction digits."""
    raw = str(text).strip()
    try:
        # Python 3.11 reads 'Z', a space for 'T' and long fractions itself: most times need no help.
        when = datetime.fromisoformat(raw)
    except ValueError:
        when = _parse_unusual_iso_time(raw)
    if when.tzinfo is None:
        when = when.replace(tzinfo=default_zone)
    return when


def _parse_unusual_iso_time(raw: str) -> datetime:
    if not raw:
        raise ParseError("empty time")
    value = raw.replace(" ", "T", 1) if "T" not in raw and raw[:4].isdigit() else raw
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Python parses at most 6 fraction digits; Windows and .NET write 7.
    if "." in value:
        head, _, tail = value.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        if digits > 6:
            value = head + "." + tail[:6] + tail[digits:]
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ParseError(f"unreadable time {raw!r}") from None


def parse_epoch(value: Any) -> datetime:
    """Seconds, milliseconds or nanoseconds since the epoch, told apart by size."""
    number = float(value)
    if number > 1e17:
        number /= 1e9
    elif number > 1e11:
        number /= 1e3
    return datetime.fromtimestamp(number, timezone.utc)


# What a log writes for "no value".
EMPTY_VALUES = (None, "", "-", [], {})


def first(mapping: Mapping[str, Any], *keys: str) -> Any:
    """The first present, non-empty value among keys."""
    for key in keys:
        value = mapping.get(key)
        if value not in EMPTY_VALUES:
            return value
    return None


def load_json_object(record: str | Mapping[str, Any]) -> Mapping[str, Any]:
    # The exact type first: the abstract Mapping check cost more than decoding a short line.
    if type(record) is not str and isinstance(record, Mapping):
        return record
    text = record.strip().lstrip("\ufeff")
    try:
        # orjson: a quarter of the standard decoder's time per line, the same errors (a subclass).
        value = orjson.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise ParseError("JSON value is not an object")
    return value


# Every event type by its name in the store: `logon`, `file_download`, `service_ticket`, ...
TYPE_BY_NAME = {
    name[len("EVENT_TYPE_"):].lower(): value
    for name, value in common_pb2.EventType.items()
    if value != common_pb2.EVENT_TYPE_UNSPECIFIED
}

SUCCESS = common_pb2.OUTCOME_SUCCESS
FAILURE = common_pb2.OUTCOME_FAILURE
LOGON = common_pb2.EVENT_TYPE_LOGON
LOGOFF = common_pb2.EVENT_TYPE_LOGOFF


@dataclass
class Counts:
    """What a run of a parser over many records found, for summaries."""

    records: int = 0
    events: int = 0
    skipped: int = 0
    unparseable: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    max_errors: int = 20

    def error(self, line_no: int, reason: str) -> None:
        self.unparseable += 1
        if len(self.errors) < self.max_errors:
            self.errors.append((line_no, reason))
