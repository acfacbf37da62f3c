"""Who is calling: a bearer token from the call's metadata, looked up and briefly cached.

Lookups are cached for UEBA_AUTH_CACHE_SECONDS (default 5), unknown tokens
included, so a busy agent costs one query per token per few seconds and a
revocation takes effect within that time. last_used_at is written at most once
a minute per token.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterable

import grpc
import sqlalchemy.exc
from sqlalchemy import Engine

from ueba.auth.ratelimit import RateLimiter
from ueba.auth.roles import allowed_roles
from ueba.auth.tokens import TokenRecord, find_active, token_hash, touch
from ueba.callctx import Caller

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 512
TOUCH_SECONDS = 60


class AuthError(Exception):
    """A call is refused; `code` is the status to end it with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    for key, value in metadata:
        if key == "authorization":
            if isinstance(value, bytes):
                return None
            scheme, _sep, token = value.strip().partition(" ")
            if scheme.lower() != "bearer":
                return None
            return token.strip() or None
    return None


class TokenCache:
    """hash -> (expiry, record or None), bounded; entries expire after `seconds`."""

    MAX_ENTRIES = 50_000

    def __init__(self, seconds: float, clock: Callable[[], float]):
        self.seconds = seconds
        self.clock = clock
        self._entries: dict[str, tuple[float, TokenRecord | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, TokenRecord | None]:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] <= self.clock():
            return False, None
        return True, entry[1]

    def put(self, key: str, record: TokenRecord | None) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                now = self.clock()
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
            self._entries[key] = (self.clock() + self.seconds, record)


class TokenAuthenticator:
    def __init__(
        self,
        engine: Engine,
        cache_seconds: float = 5.0,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.engine = engine
        self.cache = TokenCache(cache_seconds, clock)
        self.limiter = limiter or RateLimiter(0, 1)

    def lookup(self, secret: str) -> TokenRecord | None:
        key = token_hash(secret)
        hit, record = self.cache.get(key)
        if hit:
            return record
        try:
            with self.engine.begin() as conn:
                record = find_active(conn, secret)
                if record is not None and _stale(record):
                    touch(conn, record.id, TOUCH_SECONDS)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError, sqlalchemy.exc.InterfaceError) as exc:
            log.warning("token store unavailable", extra={"error": str(exc).splitlines()[0]})
            raise AuthError(grpc.StatusCode.UNAVAILABLE, "token store unavailable; retry later") from None
        self.cache.put(key, record)
        return record

    def caller(self, method: str, metadata: Iterable[tuple[str, str | bytes]]) -> tuple[Caller, str]:
        """The caller of `method` and its rate-limit key; raises AuthError when refused."""
        record = self._admitted(method, metadata)
        self.admit(record.id)
        return Caller(tenant=record.tenant, actor=record.name, role=record.role), record.id

    def recheck(self, method: str, metadata: Iterable[tuple[str, str | bytes]]) -> tuple[grpc.StatusCode, str] | None:
        """None while the token of an open call still admits it, else the status to end the call with.

        An unreachable token store keeps the call: its writes fail on their own if the store is down.
        """
        try:
            self._admitted(method, metadata)
        except AuthError as exc:
            if exc.code == grpc.StatusCode.UNAVAILABLE:
                return None
            return exc.code, exc.message
        return None

    def _admitted(self, method: str, metadata: Iterable[tuple[str, str | bytes]]) -> TokenRecord:
        secret = bearer_token(metadata)
        if secret is None:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token: send metadata 'authorization: Bearer <token>'")
        if len(secret) > MAX_TOKEN_LENGTH:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked token")
        record = self.lookup(secret)
        if record is None:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked token")
        if record.role not in allowed_roles(method):
            raise AuthError(grpc.StatusCode.PERMISSION_DENIED, f"role {record.role!r} may not call {method}")
        return record

    def admit(self, key: str) -> None:
        """Spends one request of the caller's rate; raises RESOURCE_EXHAUSTED when there is none."""
        if not self.limiter.allow(key):
            raise AuthError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"rate limit: {self.limiter.rate:g} requests per second per token (burst {self.limiter.burst}); retry later",
            )


def _stale(record: TokenRecord) -> bool:
    if record.last_used_at is None:
        return True
    return (datetime.now(timezone.utc) - record.last_used_at).total_seconds() >= TOUCH_SECONDS
