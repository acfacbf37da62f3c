"""API tokens: created, listed and revoked in the api_tokens table, never stored in clear.

A token is `ueba_` followed by 43 URL-safe characters (256 random bits). Only
its SHA-256 is stored: with that much entropy a fast hash is enough (nothing
to brute-force), and lookups stay one indexed equality on token_hash.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, or_, select, text, update

from ueba.auth.roles import ROLES
from ueba.store.schema import api_tokens, audit_log

PREFIX = "ueba_"
MAX_NAME = 200
MAX_TENANT = 64


class TokenError(ValueError):
    """A token request is malformed; the message names the field."""


@dataclass(frozen=True)
class TokenRecord:
    id: str
    tenant: str
    name: str
    role: str
    created_by: str
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _record(row) -> TokenRecord:
    return TokenRecord(
        id=str(row.id), tenant=row.tenant, name=row.name, role=row.role, created_by=row.created_by,
        created_at=row.created_at, last_used_at=row.last_used_at, revoked_at=row.revoked_at,
    )


def _check(tenant: str, name: str, role: str) -> None:
    if not tenant or len(tenant) > MAX_TENANT:
        raise TokenError(f"tenant: 1 to {MAX_TENANT} characters")
    if not name or len(name) > MAX_NAME:
        raise TokenError(f"name: 1 to {MAX_NAME} characters")
    if role not in ROLES:
        raise TokenError(f"role: expected one of {', '.join(ROLES)}")


def create_token(conn: Connection, tenant: str, name: str, role: str, created_by: str) -> tuple[TokenRecord, str]:
    """Stores a new token; returns its record and the secret, which is shown once and never again."""
    _check(tenant, name, role)
    secret = new_secret()
    row = conn.execute(
        insert(api_tokens)
        .values(tenant=tenant, name=name, role=role, token_hash=token_hash(secret), created_by=created_by)
        .returning(*api_tokens.c)
    ).one()
    conn.execute(insert(audit_log).values(
        tenant=tenant, actor=created_by, action="token.create", target=str(row.id), details={"name": name, "role": role}
    ))
    return _record(row), secret


def list_tokens(conn: Connection, tenant: str | None = None, include_revoked: bool = False) -> list[TokenRecord]:
    query = select(api_tokens).order_by(api_tokens.c.tenant, api_tokens.c.created_at, api_tokens.c.id)
    if tenant is not None:
        query = query.where(api_tokens.c.tenant == tenant)
    if not include_revoked:
        query = query.where(api_tokens.c.revoked_at.is_(None))
    return [_record(r) for r in conn.execute(query)]


def revoke_token(conn: Connection, token_id: str, actor: str) -> TokenRecord | None:
    """Marks a token revoked (kept for the audit trail); None when no live token has that id."""
    try:
        uuid.UUID(token_id)
    except ValueError:
        raise TokenError(f"id: {token_id!r} is not a token id") from None
    row = conn.execute(
        update(api_tokens)
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=text("now()"))
        .returning(*api_tokens.c)
    ).one_or_none()
    if row is None:
        return None
    conn.execute(insert(audit_log).values(
        tenant=row.tenant, actor=actor, action="token.revoke", target=str(row.id), details={"name": row.name, "role": row.role}
    ))
    return _record(row)


def find_active(conn: Connection, secret: str) -> TokenRecord | None:
    row = conn.execute(
        select(api_tokens).where(api_tokens.c.token_hash == token_hash(secret), api_tokens.c.revoked_at.is_(None))
    ).one_or_none()
    return None if row is None else _record(row)


def touch(conn: Connection, token_id: str, min_interval_seconds: int = 60) -> None:
    """Records use, at most once per interval across every replica (the WHERE makes repeats no-ops)."""
    conn.execute(
        update(api_tokens)
        .where(
            api_tokens.c.id == token_id,
            or_(
                api_tokens.c.last_used_at.is_(None),
                api_tokens.c.last_used_at < text(f"now() - interval '{int(min_interval_seconds)} seconds'"),
            ),
        )
        .values(last_used_at=text("now()"))
    )
