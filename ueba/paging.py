"""Page tokens of every list method: a keyset cursor bound to the request that made it.

The scheme (fingerprint, typed key, the request's "now", length cap) is
described in docs/architecture.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ueba.errors import InvalidArgument

MAX_TOKEN_LENGTH = 2048


@dataclass(frozen=True)
class PageToken:
    key: list[Any]
    now: datetime
    total: int | None = None
    capped: bool = False


def fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:16]


def encode(fp: str, token: PageToken) -> str:
    body = {"f": fp, "k": token.key, "n": token.now.isoformat()}
    if token.total is not None:
        body["t"] = token.total
        body["c"] = token.capped
    raw = json.dumps(body, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(fp: str, text: str, key_types: tuple[type, ...]) -> PageToken:
    """The cursor of `text`; InvalidArgument unless it was made by the same request."""
    if len(text) > MAX_TOKEN_LENGTH:
        raise InvalidArgument("page_token: too long")
    try:
        body = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(body, dict):
            raise ValueError
        key = body["k"]
        now = datetime.fromisoformat(body["n"])
        if not isinstance(key, list) or len(key) != len(key_types):
            raise ValueError
        typed = []
        for value, kind in zip(key, key_types):
            if kind is datetime:
                value = datetime.fromisoformat(value)
            elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError
            elif kind is float and not isinstance(value, (int, float)):
                raise ValueError
            elif kind is str and not isinstance(value, str):
                raise ValueError
            typed.append(value)
        total = body.get("t")
        if total is not None and not isinstance(total, int):
            raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("page_token: not a token this service issued") from None
    if body.get("f") != fp:
        raise InvalidArgument("page_token: belongs to a different query (the filter or order changed)")
    return PageToken(typed, now, total, bool(body.get("c", False)))


def page_size(requested: int, maximum: int, default: int = 50) -> int:
    if requested < 0:
        raise InvalidArgument("page_size: must not be negative")
    return min(requested or default, maximum)
