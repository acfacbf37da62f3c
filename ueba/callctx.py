"""Who is calling: the tenant and actor of the current gRPC call.

Set by the server's interceptors for the duration of a call, read by
servicers, so domain code never digs through metadata itself.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterable

# Without tokens nobody is authenticated, so a client may say whom it acts for
# (`ueba --as NAME`, UEBA_ACTOR); with tokens the token's name is the actor and this is ignored.
ACTOR_METADATA = "x-ueba-actor"
ANONYMOUS = "anonymous"
MAX_ACTOR = 128


@dataclass(frozen=True)
class Caller:
    tenant: str
    actor: str = ANONYMOUS
    role: str = "admin"


_caller: ContextVar[Caller | None] = ContextVar("ueba_caller", default=None)


def set_caller(caller: Caller):
    return _caller.set(caller)


def reset_caller(token) -> None:
    _caller.reset(token)


def current_caller(default_tenant: str) -> Caller:
    caller = _caller.get()
    return caller if caller is not None else Caller(tenant=default_tenant)


def named_actor(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The actor a client named in its metadata, or "anonymous"; ValueError when the name is unusable."""
    for key, value in metadata:
        if key != ACTOR_METADATA:
            continue
        name = value.strip() if isinstance(value, str) else ""
        if not name or len(name) > MAX_ACTOR or not name.isprintable():
            raise ValueError(f"{ACTOR_METADATA}: give a printable name of 1 to {MAX_ACTOR} characters")
        return name
    return ANONYMOUS
