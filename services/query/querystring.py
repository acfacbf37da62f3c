"""The anomaly query string (`user:alice risk>=high "new country"`, grammar in the README) as typed clauses."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from services.query.entity_names import entity_name
from services.query.vocab import DIMENSIONS, MODELS, STATUS_WORDS, level_band
from ueba.errors import InvalidArgument
from ueba.names import DEFAULT_MODE, canonical_user
from ueba.timestamps import EARLIEST, LATEST, check_time

MAX_QUERY_LENGTH = 1000
MAX_TERMS = 50
FIELDS = ("user", "ip", "host", "entity", "incident", "profile", "model", "source", "status", "dimension", "risk", "score",
          "id", "after", "before")
COMPARISONS = (">=", "<=", ">", "<")
_FIELD_TERM = re.compile(r"(-?)([A-Za-z_]+)(>=|<=|:|=|>|<)")
_AGE = re.compile(r"^(\d{1,6})([mhdw])$")
_AGE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Text:
    """Free text the description must contain."""

    text: str


@dataclass(frozen=True)
class Clause:
    """One `field op value` term, its value already checked and normalised.

    value by field: user/profile/model/dimension/id/incident -> str; ip/host -> (type, name);
    entity -> the names it may be stored as; source -> 'rule'|'model';
    status -> tuple of statuses or None (any); risk -> (lowest, highest) score;
    after/before -> datetime.
    """

    field: str
    value: object
    negated: bool
    token: str


@dataclass(frozen=True)
class ParsedQuery:
    texts: tuple[Text, ...]
    clauses: tuple[Clause, ...]

    def values(self, field: str) -> list:
        return [c.value for c in self.clauses if c.field == field and not c.negated]


def _error(message: str) -> InvalidArgument:
    return InvalidArgument(f"filter.query: {message}")


def _read_quoted(query: str, start: int) -> tuple[str, int]:
    """The text of the quoted string opening at `start`, and the index after it."""
    out = []
    i = start + 1
    while i < len(query):
        ch = query[i]
        if ch == "\\" and i + 1 < len(query) and query[i + 1] in '"\\':
            out.append(query[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise _error(f"unbalanced quote: the quote at position {start} is never closed")


def _read_word(query: str, start: int) -> tuple[str, int]:
    i = start
    while i < len(query) and not query[i].isspace():
        if query[i] == '"':
            raise _error(f"unexpected quote at position {i} in {query[start:i + 1]!r}; quote the whole value")
        i += 1
    return query[start:i], i


def tokenize(query: str) -> list[tuple[str, str | None, str | None, str, bool]]:
    """(token text, field or None, operator or None, value, value was quoted) per term."""
    terms = []
    i = 0
    while i < len(query):
        if query[i].isspace():
            i += 1
            continue
        start = i
        if query[i] == '"':
            value, i = _read_quoted(query, i)
            terms.append((query[start:i], None, None, value, True))
        else:
            m = _FIELD_TERM.match(query, i)
            if m:
                i = m.end()
                if i < len(query) and query[i] == '"':
                    value, i = _read_quoted(query, i)
                    quoted = True
                else:
                    value, i = _read_word(query, i)
                    quoted = False
                if i < len(query) and not query[i].isspace():
                    raise _error(f"expected a space after {query[start:i]!r} at position {i}")
                terms.append((query[start:i], m.group(1) + m.group(2).lower(), m.group(3), value, quoted))
            else:
                value, i = _read_word(query, i)
                terms.append((value, None, None, value, False))
        if len(terms) > MAX_TERMS:
            raise _error(f"more than {MAX_TERMS} terms")
    return terms


def _risk_bounds(op: str, raw: str, token: str) -> tuple[int, int]:
    word = raw.lower()
    if word in ("low", "medium", "high", "critical"):
        low, high = level_band(word)
    elif word.isdigit() and 0 <= int(word) <= 100:
        low = high = int(word)
    else:
        raise _error(f"invalid risk {raw!r} in {token!r}: expected low, medium, high, critical or a number 0-100")
    if op in (":", "="):
        return low, high
    if op == ">=":
        return low, 100
    if op == ">":
        return high + 1, 100
    if op == "<=":
        return 0, high
    return 0, low - 1  # "<"


def _time_value(raw: str, token: str, now: datetime) -> datetime:
    m = _AGE.match(raw.lower())
    if m:
        try:
            value = now - timedelta(**{_AGE_UNITS[m.group(2)]: int(m.group(1))})
        except OverflowError:
            raise _error(f"{token!r}: {raw} ago is before the year 1, outside {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}") from None
    else:
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise _error(f"invalid time {raw!r} in {token!r}: expected an ISO date or time (2026-10-01, 2026-10-01T12:00Z) or an age (24h, 7d)") from None
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return check_time(value, f"filter.query: {token!r}")


def _clause(field: str, op: str, raw: str, negated: bool, token: str, now: datetime, user_mode: str) -> Clause:
    if field == "score":
        field = "risk"
    if op in COMPARISONS and field != "risk":
        raise _error(f"{field} cannot be compared with {op!r} in {token!r}; use {field}:value")
    if not raw:
        raise _error(f"missing value in {token!r}")
    word = raw.lower()
    value: object
    if field == "user":
        value = canonical_user(raw, user_mode)
    elif field in ("ip", "host"):
        value = (field, entity_name(field, raw, user_mode, f"filter.query: {token!r}"))
    elif field == "entity":
        value = tuple(sorted({raw, canonical_user(raw, user_mode), raw.lower()}))
    elif field == "profile":
        value = raw
    elif field == "model":
        if word not in MODELS:
            raise _error(f"unknown model {raw!r} in {token!r} (models: {', '.join(MODELS)})")
        value = word
    elif field == "source":
        if word not in ("rule", "model"):
            raise _error(f"invalid source {raw!r} in {token!r}: expected rule or model")
        value = word
    elif field == "status":
        if word not in STATUS_WORDS:
            raise _error(f"invalid status {raw!r} in {token!r} (statuses: {', '.join(STATUS_WORDS)})")
        value = STATUS_WORDS[word]
    elif field == "dimension":
        if word not in DIMENSIONS:
            raise _error(f"unknown dimension {raw!r} in {token!r} (dimensions: {', '.join(DIMENSIONS)})")
        value = word
    elif field == "risk":
        value = _risk_bounds(op, raw, token)
    elif field in ("id", "incident"):
        try:
            value = str(uuid.UUID(raw))
        except ValueError:
            raise _error(f"invalid {'anomaly' if field == 'id' else 'incident'} id {raw!r} in {token!r}") from None
    else:  # after, before
        value = _time_value(raw, token, now)
    return Clause(field, value, negated, token)


def parse(query: str, now: datetime | None = None, user_mode: str = DEFAULT_MODE) -> ParsedQuery:
    """The typed terms of a query string, user names in `user_mode`; InvalidArgument names the bad token."""
    if len(query) > MAX_QUERY_LENGTH:
        raise _error(f"longer than {MAX_QUERY_LENGTH} characters")
    if "\x00" in query:
        raise _error("contains a NUL character")
    now = now or datetime.now(timezone.utc)
    texts: list[Text] = []
    clauses: list[Clause] = []
    for token, field, op, value, _quoted in tokenize(query):
        if field is None:
            if value.strip():
                texts.append(Text(value))
            continue
        negated = field.startswith("-")
        name = field.lstrip("-")
        if name not in FIELDS:
            raise _error(
                f"unknown field {name!r} in {token!r} (fields: {', '.join(FIELDS)}; "
                "quote text that contains ':' or '=')"
            )
        if negated and name in ("after", "before", "risk", "score"):
            raise _error(f"{name} cannot be negated in {token!r}")
        clauses.append(_clause(name, op, value, negated, token, now, user_mode))
    return ParsedQuery(tuple(texts), tuple(clauses))
