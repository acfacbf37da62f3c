"""Named fields to an Event: Elastic Common Schema and OpenTelemetry semantic conventions.

Both schemas name fields with dotted paths (`user.name`, `source.ip`), written
either as nested objects or as flat dotted keys; `flatten` makes both look the
same, and `event_from_fields` maps the result. The ECS parser and the OTLP
receiver share it, so an agent gets the same mapping whichever way it sends.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ueba.parsers.base import (
    EMPTY_VALUES,
    FAILURE,
    SUCCESS,
    TYPE_BY_NAME,
    Event,
    ParseError,
    ParseOptions,
    clean_ip,
    first,
    load_json_object,
    names_its_source,
    parse_epoch,
    parse_iso_time,
    record_hash_id,
    set_time,
    set_user,
)
from ueba.parsers.shapes import ShapeReaders
from ueba.parsers.winevent import set_logon_type
from ueba.v1 import common_pb2


_LEAVES = frozenset((str, int, float, bool, list, type(None)))


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'user': {'name': 'a'}} and {'user.name': 'a'} both give {'user.name': 'a'}."""
    flat: dict[str, Any] = {}
    _flatten_into(flat, value, prefix)
    return flat


def _flatten_into(flat: dict[str, Any], value: Mapping[str, Any], prefix: str) -> None:
    # One dict filled in place: a dict per level merged upwards was a sixth of the parse.
    for key, item in value.items():
        # JSON decoding gives dicts and scalars: exact types first, the abstract check only for others.
        kind = type(item)
        if (kind is dict or (kind not in _LEAVES and isinstance(item, Mapping))) and item:
            _flatten_into(flat, item, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = item


USER_KEYS = ("user.name", "user.email", "enduser.id", "user.id", "user")
# Where an event came from and went to, best first. An `.address` is an IP address or a
# host name (ECS: "the raw address"), so each key may fill either field: with
# `source.ip` and a host-name `source.address` both are kept.
SOURCE_KEYS = ("source.ip", "client.ip", "source.address", "client.address", "network.peer.address",
               "source.domain", "client.domain", "source.hostname")
DESTINATION_KEYS = ("destination.ip", "server.ip", "destination.address", "server.address",
                    "destination.domain", "server.domain", "host.name", "host.hostname", "observer.hostname")
PROCESS_KEYS = ("process.name", "process.executable", "process.command_line")
TIME_KEYS = ("@timestamp", "timestamp", "event.created", "time", "event.ingested")
GEO_PREFIXES = ("source.geo.", "client.geo.", "geo.")

# Words in an action or event name that say what kind of thing happened,
# checked in order (logoff before logon: "logged off" also contains "log").
_TYPE_WORDS: list[tuple[re.Pattern[str], int]] = [
    (re.compile(r"log ?(off|out)|logged (off|out)|sign ?(off|out)|signed out|session (end|closed)"), common_pb2.EVENT_TYPE_LOGOFF),
    (re.compile(r"password (change|reset|update)|(change|reset)( user)? password|passwd"), common_pb2.EVENT_TYPE_PASSWORD_CHANGE),
    (re.compile(r"log ?[io]n|logged in|sign ?in|signed in|authenticat|user login"), common_pb2.EVENT_TYPE_LOGON),
    (re.compile(r"download"), common_pb2.EVENT_TYPE_FILE_DOWNLOAD),
    (re.compile(r"upload"), common_pb2.EVENT_TYPE_FILE_UPLOAD),
    (re.compile(r"(file|object|document|folder) (delet|remov|recycl)|(delet|remov|recycl)\w* (file|object|document|folder)"), common_pb2.EVENT_TYPE_FILE_DELETE),
    (re.compile(r"shar(e|ing)|anonymous link"), common_pb2.EVENT_TYPE_FILE_SHARE),
    (re.compile(r"privilege|sudo|elevat|run ?as|special logon"), common_pb2.EVENT_TYPE_PRIVILEGE_USE),
    (re.compile(r"(user|account|group|member)\w* (creat|delet|modif|chang|add|remov|disabl|enabl)|(creat|delet|modif|chang|add|remov|disabl|enabl)\w* (user|account)"), common_pb2.EVENT_TYPE_ACCOUNT_CHANGE),
]


def _words(text: str) -> str:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(text))  # UserLoggedIn -> User Logged In
    return re.sub(r"[\s._\-/:]+", " ", spaced).strip().lower()


def type_from_words(*texts: Any) -> int | None:
    for text in texts:
        if not text:
            continue
        if isinstance(text, (list, tuple)):
            found = type_from_words(*text)
            if found:
                return found
            continue
        kind = _type_of_text(str(text))
        if kind:
            return kind
    return None


# Logs repeat a few hundred action names; matching each anew was a tenth of the parse.
@functools.lru_cache(maxsize=4096)
def _type_of_text(text: str) -> int | None:
    words = _words(text)
    if words.replace(" ", "_") in TYPE_BY_NAME:
        return TYPE_BY_NAME[words.replace(" ", "_")]
    for pattern, kind in _TYPE_WORDS:
        if pattern.search(words):
            return kind
    return None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).lower() for v in value]
    return [str(value).lower()]


def type_from_categories(categories: list[str], types: list[str], action: str) -> int | None:
    """ECS event.category / event.type when the action's words did not tell."""
    words = _words(action)
    if "authentication" in categories or "session" in categories:
        return common_pb2.EVENT_TYPE_LOGOFF if "end" in types else common_pb2.EVENT_TYPE_LOGON
    if "iam" in categories:
        return common_pb2.EVENT_TYPE_PASSWORD_CHANGE if "password" in words else common_pb2.EVENT_TYPE_ACCOUNT_CHANGE
    if "file" in categories:
        if "deletion" in types:
            return common_pb2.EVENT_TYPE_FILE_DELETE
        if "creation" in types:
            return common_pb2.EVENT_TYPE_FILE_UPLOAD
        if "access" in types:
            return common_pb2.EVENT_TYPE_FILE_DOWNLOAD
    if "process" in categories and "start" in types:
        return common_pb2.EVENT_TYPE_PROCESS_START
    if "web" in categories:
        return common_pb2.EVENT_TYPE_APP_ACCESS
    if "network" in categories:
        return common_pb2.EVENT_TYPE_HOST_ACCESS
    return None


def outcome_of(value: Any, *texts: Any) -> int:
    text = str(value or "").strip().lower()
    if text in ("success", "succeeded", "successful", "ok", "true", "allowed", "allow", "passed", "0"):
        return SUCCESS
    if text in ("failure", "failed", "fail", "false", "denied", "deny", "blocked", "error"):
        return FAILURE
    for t in texts:
        words = _words(t or "")
        if re.search(r"\bfail|\bdenied\b|\binvalid\b|\breject", words):
            return FAILURE
    return common_pb2.OUTCOME_UNSPECIFIED


def _coordinate_of(lat: Any, lon: Any, loc: Any) -> tuple[float, float] | None:
    if lat is None and isinstance(loc, (list, tuple)) and len(loc) == 2:
        lon, lat = loc  # GeoJSON order
    elif lat is None and isinstance(loc, str) and "," in loc:
        lat, lon = loc.split(",", 1)
    if lat is None or lon is None:
        return None
    try:
        return float(lat), float(lon)
    except (TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=64)
def _geo_names(prefix: str) -> tuple[tuple[str, ...], tuple[str, ...], str, str, str]:
    """(country names, city names, latitude, longitude, location) under a prefix, made once."""
    return ((prefix + "country_iso_code", prefix + "country.iso_code"),
            (prefix + "city_name", prefix + "city.name", prefix + "locality.name"),
            prefix + "location.lat", prefix + "location.lon", prefix + "location")


def set_geo(event: Event, flat: Mapping[str, Any], prefixes: tuple[str, ...] = GEO_PREFIXES) -> None:
    for prefix in prefixes:
        country_keys, city_keys, lat_key, lon_key, loc_key = _geo_names(prefix)
        country = first(flat, *country_keys)
        city = first(flat, *city_keys)
        coords = _coordinate_of(flat.get(lat_key), flat.get(lon_key), flat.get(loc_key))
        if country or city or coords:
            # One wrapper of the sub-message: `event.geo.x = ...` made one per assignment (a tenth of the mapping).
            geo = event.geo
            if country:
                geo.country_code = str(country).upper()
            if city:
                geo.city = str(city)
            if coords:
                geo.latitude, geo.longitude = coords
                geo.has_coordinates = True
            return


def _address_and_host(flat: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, str]:
    """The first IP address and the first host name among the keys' values."""
    ip = host = ""
    for key in keys:
        value = flat.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if value in (None, "", "-") or not isinstance(value, (str, int)):
            continue
        text = str(value).strip()
        address = clean_ip(text)
        if address:
            ip = ip or address
        elif text:
            host = host or text.lower()
        if ip and host:
            break
    return ip, host


def parse_time_value(value: Any, options: ParseOptions) -> datetime:
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        return parse_epoch(value)
    return parse_iso_time(str(value), options.timezone)


# The fields each part of an Event is taken from, best first.
_FIRST_OF = {
    "user": USER_KEYS,
    "time": TIME_KEYS,
    "action": ("event.action", "event.name", "action", "event.code"),
    "explicit": ("ueba.event_type",),
    "host_ip": ("host.ip",),
    "application": ("application", "app.name", "service.name", "event.provider"),
    "agent": ("user_agent.original", "http.user_agent", "user_agent"),
    "size": ("file.size", "bytes", "network.bytes", "http.response.body.bytes"),
    "count": ("file.count", "file_count"),
    "object": ("file.path", "file.name", "url.original", "url.full", "object"),
    "department": ("user.department", "department", "organization.unit"),
    "reason": ("event.reason", "error.message", "failure_reason"),
    # A number (`logon_type`, `winlog.logon.type_id`) or Winlogbeat's word (`winlog.logon.type`: "Network").
    "logon_type": ("logon_type", "winlog.logon.type_id", "winlog.logon.type"),
    "producer": ("event.module", "event.provider"),
    "event_id": ("event.id", "log.record.uid"),
}
_ATTRIBUTE_KEYS = ("event.category", "event.type", "event.dataset", "event.module")
_GEO_KEYS = {
    prefix: tuple(prefix + name for name in ("country_iso_code", "country.iso_code", "city_name", "city.name",
                                             "locality.name", "location", "location.lat", "location.lon"))
    for prefix in GEO_PREFIXES
}
_KNOWN_KEYS = frozenset(
    [key for keys in _FIRST_OF.values() for key in keys] + [key for keys in _GEO_KEYS.values() for key in keys]
    + [*SOURCE_KEYS, *DESTINATION_KEYS, *PROCESS_KEYS, *_ATTRIBUTE_KEYS]
)


class _Plan:
    """Which of the mapped fields a record has, worked out once for every record with the same ones.

    A log repeats a few shapes; probing some 80 field names on every record was half of the parse.
    """

    def __init__(self, present: frozenset[str]):
        def having(keys: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(k for k in keys if k in present)

        self.firsts = tuple((part, having(keys)) for part, keys in _FIRST_OF.items() if having(keys))
        self.source = having(SOURCE_KEYS)
        self.destination = having(DESTINATION_KEYS)
        self.geo = tuple(prefix for prefix, keys in _GEO_KEYS.items() if having(keys))
        self.process = having(PROCESS_KEYS)
        self.attributes = having(_ATTRIBUTE_KEYS)

    def values(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """Each part's first present, non-empty value, as `first` would find it."""
        found = {}
        for part, keys in self.firsts:
            for key in keys:
                value = flat[key]
                # Most values are strings: two comparisons instead of five against EMPTY_VALUES.
                if (value and value != "-") if type(value) is str else value not in EMPTY_VALUES:
                    found[part] = value
                    break
        return found


@functools.lru_cache(maxsize=1024)
def _plan(present: frozenset[str]) -> _Plan:
    return _Plan(present)


# Every name the mapping reads: the planned ones, and those it asks for by name.
MAPPED_NAMES = _KNOWN_KEYS | {"message", "event.outcome"}


def _plan_of(names: Iterable[str]) -> _Plan:
    """The plan of a record with these names (of which those the mapping knows decide it)."""
    return _plan(_KNOWN_KEYS.intersection(names))


def event_from_fields(
    fields: Mapping[str, Any],
    producer: str,
    options: ParseOptions,
    *,
    when: datetime | None = None,
    event_id: str | None = None,
) -> Event:
    """Maps ECS / OpenTelemetry named fields to an Event; raises ParseError when it cannot.

    `when` and `event_id` come from the envelope when the caller has them
    (an OTLP record's time and uid); otherwise from the fields.
    """
    flat = flatten(fields)
    return _event_from_flat(flat, _plan_of(flat), fields, producer, options, when, event_id)


def _event_from_flat(flat: Mapping[str, Any], plan: _Plan, fields: Mapping[str, Any], producer: str,
                     options: ParseOptions, when: datetime | None, event_id: str | None) -> Event:
    """The mapping proper, from the flattened names (at least those in `MAPPED_NAMES`)."""
    got = plan.values(flat)
    event = Event()
    user = got.get("user")
    if user and not isinstance(user, (str, int)):
        raise ParseError("user.name is not a string")
    set_user(event, str(user or ""))

    if when is None:
        raw_time = got.get("time")
        if raw_time is None:
            raise ParseError("no time (@timestamp)")
        when = parse_time_value(raw_time, options)
    set_time(event, when)

    action = got.get("action")
    kind = (
        type_from_words(got.get("explicit"))
        or type_from_words(action, flat.get("message") if not action else None)
        or type_from_categories(_as_list(flat.get("event.category")), _as_list(flat.get("event.type")), str(action or ""))
    )
    if not kind:
        raise ParseError("cannot tell what happened: set event.action, event.name or event.category")
    event.type = kind
    event.outcome = outcome_of(flat.get("event.outcome"), action)
    if action:
        event.action = str(action)[:256]

    if plan.source:
        event.source_ip, event.source_host = _address_and_host(flat, plan.source)
    if plan.destination:
        event.destination_ip, event.destination_host = _address_and_host(flat, plan.destination)
    if not event.user and not names_its_source(event):
        raise ParseError("no user (user.name); only a failure with a source address or host may name none")
    host_ip = got.get("host_ip")
    if not event.destination_ip and host_ip:
        ip = clean_ip(host_ip[0] if isinstance(host_ip, list) else host_ip)
        if ip:
            event.destination_ip = ip
    if plan.geo:
        set_geo(event, flat, plan.geo)
    _set_details(event, got)
    attributes = event.attributes  # one map wrapper, not one per entry
    for key in plan.process:
        value = flat[key]
        if isinstance(value, (str, int)) and str(value).strip():
            attributes[key] = str(value).strip()[:1024]
    for key in plan.attributes:
        value = flat[key]
        if value not in (None, "", []):
            attributes[key] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    event.producer = str(got.get("producer") or producer)
    event.event_id = str(event_id or got.get("event_id") or record_hash_id(producer, fields))
    return event


def _set_details(event: Event, got: Mapping[str, Any]) -> None:
    application = got.get("application")
    if application:
        event.application = str(application)
    agent = got.get("agent")
    if agent and isinstance(agent, str):
        event.user_agent = agent
    size = got.get("size")
    if size is not None:
        try:
            event.bytes = int(size)
        except (TypeError, ValueError):
            raise ParseError(f"file.size is not a number: {size!r}") from None
    count = got.get("count")
    if count is not None:
        try:
            event.file_count = int(count)
        except (TypeError, ValueError):
            raise ParseError(f"file.count is not a number: {count!r}") from None
    obj = got.get("object")
    if obj:
        event.object = str(obj)[:1024]
    department = got.get("department")
    if department:
        event.department = str(department)
    reason = got.get("reason")
    if reason and event.outcome == FAILURE:
        event.failure_reason = str(reason)[:256]
    logon_type = got.get("logon_type")
    if logon_type is not None:
        set_logon_type(event, logon_type)


class EcsParser:
    """ECS JSON lines (Elastic agents, Filebeat, Logstash output), nested or dotted."""

    name = "ecs"

    def __init__(self, options: ParseOptions | None = None):
        self.options = options or ParseOptions()
        self._shapes = ShapeReaders(MAPPED_NAMES, _plan_of)

    def parse(self, record: str | Mapping[str, Any]) -> list[Event]:
        fields = load_json_object(record)
        read = self._shapes.read(fields) if type(fields) is dict else None
        if read is None:
            return [event_from_fields(fields, "ecs", self.options)]
        flat, plan = read
        return [_event_from_flat(flat, plan, fields, "ecs", self.options, None, None)]
