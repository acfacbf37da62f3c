"""The anomaly query string (`user:alice risk>=high "new country"`, grammar in the README) as typed clauses."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Union
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
class Not:
    operand: "Node"


@dataclass(frozen=True)
class All:
    """Every operand must hold (AND, or terms side by side)."""

    operands: tuple["Node", ...]


@dataclass(frozen=True)
class Any:
    """One operand must hold (OR)."""

    operands: tuple["Node", ...]


Node = Union[Text, Clause, Not, All, Any]


@dataclass(frozen=True)
class ParsedQuery:
    """The query's terms; `expr` is their boolean tree when the query used AND, OR, NOT or parentheses.

    Without operators (`expr` None) terms side by side must all hold, except
    that positive terms on one field are alternatives (`user:a user:b`).
    """

    texts: tuple[Text, ...]
    clauses: tuple[Clause, ...]
    expr: Node | None = None

    def values(self, field: str) -> list:
        """Values of the positive terms on `field` (outside any NOT)."""
        if self.expr is None:
            return [c.value for c in self.clauses if c.field == field and not c.negated]
        return [c.value for c in _positive_clauses(self.expr) if c.field == field]


def _positive_clauses(node: Node) -> list[Clause]:
    if isinstance(node, Clause):
        return [] if node.negated else [node]
    if isinstance(node, (All, Any)):
        return [c for operand in node.operands for c in _positive_clauses(operand)]
    return []


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
    while i < len(query) and not query[i].isspace() and query[i] not in "()":
        if query[i] == '"':
            raise _error(f"unexpected quote at position {i} in {query[start:i + 1]!r}; quote the whole value")
        i += 1
    return query[start:i], i


OPERATORS = ("AND", "OR", "NOT")


def tokenize(query: str) -> list[tuple[str, str | None, str | None, str, bool]]:
    """(token text, field or None, operator or None, value, value was quoted) per term.

    A parenthesis is a token of its own with field None and operator "(" or ")";
    an unquoted AND, OR or NOT (any case) has field None and operator "AND", "OR" or "NOT".
    """
    terms = []
    i = 0
    while i < len(query):
        if query[i].isspace():
            i += 1
            continue
        start = i
        if query[i] in "()":
            i += 1
            terms.append((query[start], None, query[start], "", False))
            continue
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
                if i < len(query) and not query[i].isspace() and query[i] != ")":
                    raise _error(f"expected a space after {query[start:i]!r} at position {i}")
                terms.append((query[start:i], m.group(1) + m.group(2).lower(), m.group(3), value, quoted))
            else:
                value, i = _read_word(query, i)
                operator = value.upper() if value.upper() in OPERATORS else None
                terms.append((value, None, operator, value, False))
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
    tokens = tokenize(query)
    leaves: list[Node | str] = [_leaf(token, field, op, value, now, user_mode) for token, field, op, value, _quoted in tokens]
    texts = tuple(x for x in leaves if isinstance(x, Text))
    clauses = tuple(x for x in leaves if isinstance(x, Clause))
    if not any(isinstance(x, str) for x in leaves):
        return ParsedQuery(texts, clauses)
    return ParsedQuery(texts, clauses, _Expression(leaves).parse())


def _leaf(token: str, field: str | None, op: str | None, value: str, now: datetime, user_mode: str) -> Node | str:
    """A Text or Clause, or the operator or parenthesis the token is."""
    if field is None:
        return op if op is not None else Text(value)
    negated = field.startswith("-")
    name = field.lstrip("-")
    if name not in FIELDS:
        raise _error(
            f"unknown field {name!r} in {token!r} (fields: {', '.join(FIELDS)}; "
            "quote text that contains ':' or '=')"
        )
    if negated and name in ("after", "before", "risk", "score"):
        raise _error(f"{name} cannot be negated in {token!r}")
    return _clause(name, op, value, negated, token, now, user_mode)


class _Expression:
    """Recursive descent over leaves: OR binds loosest, then AND (or terms side by side), then NOT."""

    def __init__(self, leaves: list[Node | str]):
        self.leaves = leaves
        self.i = 0

    def parse(self) -> Node:
        node = self._or()
        if self.i < len(self.leaves):
            raise _error("unbalanced parenthesis: ')' has no '(' before it")
        return node

    def _peek(self) -> Node | str | None:
        return self.leaves[self.i] if self.i < len(self.leaves) else None

    def _or(self) -> Node:
        operands = [self._and()]
        while self._peek() == "OR":
            self.i += 1
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Any(tuple(operands))

    def _and(self) -> Node:
        operands = [self._not()]
        while self._peek() not in (None, "OR", ")"):
            if self._peek() == "AND":
                self.i += 1
            operands.append(self._not())
        return operands[0] if len(operands) == 1 else All(tuple(operands))

    def _not(self) -> Node:
        if self._peek() == "NOT":
            self.i += 1
            return Not(self._not())
        return self._primary()

    def _primary(self) -> Node:
        leaf = self._peek()
        if leaf is None:
            raise _error("the query ends where a term was expected (after AND, OR, NOT or '(')")
        self.i += 1
        if leaf == "(":
            node = self._or()
            if self._peek() != ")":
                raise _error("unbalanced parenthesis: '(' is never closed")
            self.i += 1
            return node
        if leaf == ")":
            raise _error("')' where a term was expected (empty parentheses, or an operator before ')')")
        if isinstance(leaf, str):
            raise _error(f"{leaf!r} where a term was expected; quote it (\"{leaf.lower()}\") to search the word")
        return leaf
