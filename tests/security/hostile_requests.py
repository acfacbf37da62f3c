"""Requests of any RPC with hostile values in every field of a kind: out-of-range timestamps,
forged page tokens, the largest numbers and very long strings."""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Callable

from google.protobuf import descriptor
from google.protobuf.message import Message

from .rpcs import Rpc

FD = descriptor.FieldDescriptor
YEAR_9999 = 253_402_300_799  # the last second a Timestamp may hold
SKIPPED_TYPES = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}

# Nothing the server says may show its SQL, its code or its libraries.
LEAKS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE)\b.*\b(FROM|INTO|SET|WHERE)\b|\[SQL:|\[parameters:|Traceback|File \"|"
    r"psycopg|sqlalchemy|\bline \d+\b|\.py\b|0x[0-9a-f]{6,}",
    re.IGNORECASE | re.DOTALL,
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FORGED_TOKENS = [
    "!!not base64!!",
    _b64(b"\xff\xfe\x00"),
    _b64(json.dumps({"f": "0" * 16, "k": ["' OR 1=1 --", 1], "n": "2026-01-01T00:00:00+00:00"}).encode()),
    _b64(json.dumps({"f": "0" * 16, "k": [1e308, None, {"x": 1}], "n": "9999-12-31T23:59:59+00:00"}).encode()),
    _b64(json.dumps({"f": "0" * 16, "k": [], "n": "not a time", "t": "many"}).encode()),
    _b64(json.dumps([1, 2, 3]).encode()),
    "after:999999d",
    "x" * 5000,
]


def _fill(message: Message, setter: Callable[[Message, FD], bool], depth: int = 0) -> None:
    """Applies `setter` to every field, descending into message fields (one element of repeated ones)."""
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None:
            if depth > 3 or field.message_type.full_name in SKIPPED_TYPES or field.message_type.GetOptions().map_entry:
                continue
            if setter(message, field):
                continue
            child = getattr(message, field.name).add() if field.is_repeated else getattr(message, field.name)
            _fill(child, setter, depth + 1)
            if not field.is_repeated:
                child.SetInParent()
        else:
            setter(message, field)


def timestamps(seconds: int, nanos: int) -> Callable[[Message, FD], bool]:
    def setter(message: Message, field: FD) -> bool:
        if field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp":
            if field.is_repeated:
                stamp = getattr(message, field.name).add()
            else:
                stamp = getattr(message, field.name)
            stamp.seconds, stamp.nanos = seconds, nanos
            return True
        return False

    return setter


def page_token(token: str) -> Callable[[Message, FD], bool]:
    def setter(message: Message, field: FD) -> bool:
        if field.name == "page_token":
            setattr(message, field.name, token)
            return True
        return False

    return setter


HUGE_INTS = {FD.TYPE_INT32: 2**31 - 1, FD.TYPE_SINT32: 2**31 - 1, FD.TYPE_UINT32: 2**32 - 1, FD.TYPE_INT64: 2**63 - 1,
             FD.TYPE_SINT64: 2**63 - 1, FD.TYPE_UINT64: 2**64 - 1, FD.TYPE_DOUBLE: 1e308, FD.TYPE_FLOAT: 3e38}


def _huge(message: Message, field: FD) -> bool:
    value: Any = None
    if field.type in HUGE_INTS:
        value = HUGE_INTS[field.type]
    elif field.type == FD.TYPE_STRING:
        value = "\u00e9x" * 20_000
    if value is None or field.message_type is not None:
        return False
    if field.is_repeated:
        getattr(message, field.name).append(value)
    else:
        setattr(message, field.name, value)
    return True


CASES: dict[str, Callable[[Message, FD], bool]] = {
    "year_9999": timestamps(YEAR_9999, 0),
    "beyond_year_9999": timestamps(10**15, 0),
    "nanos_minus_5": timestamps(1_700_000_000, -5),
    "huge_values": _huge,
    **{f"forged_token_{i}": page_token(token) for i, token in enumerate(FORGED_TOKENS)},
}


def has_field(rpc: Rpc, predicate: Callable[[FD], bool]) -> bool:
    found = []

    def probe(_message: Message, field: FD) -> bool:
        if predicate(field):
            found.append(field)
        return False

    _fill(rpc.request_class(), probe)
    return bool(found)


def applies(rpc: Rpc, case: str) -> bool:
    if case.startswith("forged_token"):
        return has_field(rpc, lambda f: f.name == "page_token")
    if case == "huge_values":
        return True
    return has_field(rpc, lambda f: f.message_type is not None and f.message_type.full_name == "google.protobuf.Timestamp")


def hostile_request(rpc: Rpc, case: str | Callable[[Message, FD], bool]) -> Message:
    message = rpc.request_class()
    _fill(message, CASES[case] if isinstance(case, str) else case)
    return message
