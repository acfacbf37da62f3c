"""Declared parameters of a profile kind, and their validation.

Each kind lists its parameters once; validation fills defaults, rejects unknown
names and names the bad parameter in its message ("parameters.count: must be a
positive integer"), so that the API can hand the message straight back.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable

from ueba.errors import InvalidArgument

COUNTRY = re.compile(r"^[A-Z]{2}$")


class ParameterError(InvalidArgument, ValueError):
    """A bad profile definition; `field` is the dotted name of the culprit (INVALID_ARGUMENT when a caller sent it)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(field, "must be a number")
    return float(value)


def _integer(field: str, value: Any, message: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise ParameterError(field, message)
    return int(value)


def positive_int(field: str, value: Any) -> int:
    n = _integer(field, value, "must be a positive integer")
    if n <= 0:
        raise ParameterError(field, "must be a positive integer")
    return n


def non_negative_int(field: str, value: Any) -> int:
    n = _integer(field, value, "must be an integer of 0 or more")
    if n < 0:
        raise ParameterError(field, "must be an integer of 0 or more")
    return n


def positive_number(field: str, value: Any) -> float:
    x = _number(field, value)
    if x <= 0:
        raise ParameterError(field, "must be a positive number")
    return x


def non_negative_number(field: str, value: Any) -> float:
    x = _number(field, value)
    if x < 0:
        raise ParameterError(field, "must be a number of 0 or more")
    return x


def share(field: str, value: Any) -> float:
    x = _number(field, value)
    if not 0 <= x <= 1:
        raise ParameterError(field, "must be a number from 0 to 1")
    return x


def score(field: str, value: Any) -> int:
    n = _integer(field, value, "must be an integer from 0 to 100")
    if not 0 <= n <= 100:
        raise ParameterError(field, "must be an integer from 0 to 100")
    return n


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ParameterError(field, "must be true or false")
    return value


def string_list(field: str, value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ParameterError(field, "must be a list of non-empty strings")
    return [v.strip() for v in value]


def countries(field: str, value: Any) -> list[str]:
    items = string_list(field, value)
    out = []
    for i, item in enumerate(items):
        code = item.upper()
        if not COUNTRY.match(code):
            raise ParameterError(f"{field}[{i}]", f"{item!r} is not an ISO 3166-1 alpha-2 country code")
        out.append(code)
    return sorted(set(out))


def cidrs(field: str, value: Any) -> list[str]:
    items = string_list(field, value)
    out = []
    for i, item in enumerate(items):
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ParameterError(f"{field}[{i}]", f"{item!r} is not a CIDR network") from None
    return out


def choice(*allowed: str) -> Callable[[str, Any], str]:
    def check(field: str, value: Any) -> str:
        if value not in allowed:
            raise ParameterError(field, f"must be one of {', '.join(allowed)}")
        return value

    return check


def choices(*allowed: str) -> Callable[[str, Any], list[str]]:
    def check(field: str, value: Any) -> list[str]:
        items = string_list(field, value)
        for i, item in enumerate(items):
            if item not in allowed:
                raise ParameterError(f"{field}[{i}]", f"must be one of {', '.join(allowed)}")
        if not items:
            raise ParameterError(field, "must name at least one of " + ", ".join(allowed))
        return list(dict.fromkeys(items))

    return check


@dataclass(frozen=True)
class Param:
    name: str
    check: Callable[[str, Any], Any]
    default: Any
    help: str


def validate(params: tuple[Param, ...], raw: dict[str, Any] | None) -> dict[str, Any]:
    """Checked parameters with defaults filled in; raises ParameterError."""
    raw = dict(raw or {})
    known = {p.name for p in params}
    for name in sorted(raw):
        if name not in known:
            raise ParameterError(f"parameters.{name}", "unknown parameter; expected one of " + ", ".join(sorted(known)))
    out: dict[str, Any] = {}
    for p in params:
        value = raw.get(p.name, p.default)
        out[p.name] = p.check(f"parameters.{p.name}", value) if value is not None else None
    return out
