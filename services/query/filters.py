"""AnomalyFilter (and its query string) checked once into typed criteria; store/conditions.py makes them SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.query import querystring
from services.query.entity_names import entity_ref
from services.query.querystring import ParsedQuery
from services.query.vocab import DIMENSIONS, level_band
from ueba.messages import ENUM_LEVEL, ENUM_SOURCE, ENUM_STATUS
from ueba.errors import InvalidArgument, check_text
from ueba.names import canonical_user
from ueba.timestamps import time_range

MAX_LIST_VALUES = 200
ORDER_NAMES = ("time desc", "time asc", "risk desc")
ORDER_ALIASES = {"": "time desc", "time": "time desc", "risk": "risk desc"}


@dataclass(frozen=True)
class AnomalyCriteria:
    """What an AnomalyFilter selects, every value checked and in its stored form; empty means any."""

    start: datetime | None = None
    end: datetime | None = None
    score_bands: tuple[tuple[int, int], ...] = ()  # (lowest, highest) risk score, any of them
    profiles: tuple[str, ...] = ()  # profile ids, names or kinds
    source: str | None = None
    statuses: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    entities: tuple[tuple[str, str], ...] = ()  # (type, name)
    incident_ids: tuple[str, ...] = ()
    dimensions: tuple[str, ...] = ()
    query: ParsedQuery | None = None
    hide_ignored: bool = True


def _values(field: str, values: Any, max_length: int = 256) -> list[str]:
    if len(values) > MAX_LIST_VALUES:
        raise InvalidArgument(f"{field}: more than {MAX_LIST_VALUES} values")
    return [check_text(f"{field}[{i}]", v, max_length) for i, v in enumerate(values)]


def _range(f) -> tuple[datetime | None, datetime | None]:
    try:
        return time_range(f, "range")
    except InvalidArgument as exc:
        raise InvalidArgument(f"filter.{exc.message}") from None


def _score_bands(levels) -> tuple[tuple[int, int], ...]:
    bands = []
    for i, level in enumerate(levels):
        if level not in ENUM_LEVEL:
            raise InvalidArgument(f"filter.risk_levels[{i}]: unknown or unspecified risk level {level}")
        bands.append(level_band(ENUM_LEVEL[level]))
    return tuple(bands)


def _source(source: int) -> str | None:
    if not source:
        return None
    if source not in ENUM_SOURCE:
        raise InvalidArgument(f"filter.source: unknown source {source}")
    return ENUM_SOURCE[source]


def _statuses(statuses) -> tuple[str, ...]:
    out = []
    for i, status in enumerate(statuses):
        if status not in ENUM_STATUS:
            raise InvalidArgument(f"filter.statuses[{i}]: unknown or unspecified status {status}")
        out.append(ENUM_STATUS[status])
    return tuple(out)


def _dimensions(dimensions) -> tuple[str, ...]:
    dims = tuple(d.lower() for d in _values("filter.dimensions", dimensions))
    for i, d in enumerate(dims):
        if d not in DIMENSIONS:
            raise InvalidArgument(f"filter.dimensions[{i}]: unknown dimension {d!r} (dimensions: {', '.join(DIMENSIONS)})")
    return dims


def criteria(f, now: datetime, user_mode: str) -> AnomalyCriteria:
    """The checked criteria of an AnomalyFilter; relative times in its query count back from `now`."""
    start, end = _range(f)
    bands = _score_bands(f.risk_levels)
    profiles = tuple(_values("filter.profiles", f.profiles))
    source = _source(f.source)
    statuses = _statuses(f.statuses)
    users = tuple(canonical_user(u, user_mode) for u in _values("filter.users", f.users))
    dimensions = _dimensions(f.dimensions)
    if len(f.entities) > MAX_LIST_VALUES:
        raise InvalidArgument(f"filter.entities: more than {MAX_LIST_VALUES} values")
    entities = tuple(entity_ref(e, user_mode, f"filter.entities[{i}]") for i, e in enumerate(f.entities))
    incident_ids = tuple(
        parse_id(f"filter.incident_ids[{i}]", v, "an incident") for i, v in enumerate(_values("filter.incident_ids", f.incident_ids))
    )
    parsed = querystring.parse(f.query, now, user_mode) if f.query.strip() else None
    # Naming a user asks for that user, ignored or not.
    named_users = bool(users) or any(t == "user" for t, _ in entities) or bool(parsed and parsed.values("user"))
    return AnomalyCriteria(
        start, end, bands, profiles, source, statuses, users, entities, incident_ids, dimensions, parsed,
        hide_ignored=not f.include_ignored and not named_users,
    )


def parse_id(field: str, value: str, what: str = "an anomaly") -> str:
    """The canonical text of a UUID a caller gave in `field`."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{field}: {value[:64]!r} is not {what} id (a UUID)") from None


def is_empty(f) -> bool:
    """True when a filter selects everything (ReviewAnomalies refuses that by mistake)."""
    return not (
        f.HasField("range") or f.risk_levels or f.profiles or f.source or f.statuses or f.users or f.dimensions
        or f.entities or f.incident_ids or f.query.strip()
    )


def parse_order(text: str) -> str:
    """The name of the order `text` asks for (one of ORDER_NAMES)."""
    name = " ".join(text.lower().split())
    name = ORDER_ALIASES.get(name, name)
    if name not in ORDER_NAMES:
        raise InvalidArgument(f"order_by: {text!r} is not one of {', '.join(ORDER_NAMES)}")
    return name
