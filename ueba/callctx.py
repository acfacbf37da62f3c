"""Who is calling: the tenant and actor of the current gRPC call.

Set by the server's interceptors for the duration of a call, read by
servicers, so domain code never digs through metadata itself.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    tenant: str
    actor: str = "anonymous"
    role: str = "admin"


_caller: ContextVar[Caller | None] = ContextVar("ueba_caller", default=None)


def set_caller(caller: Caller):
    return _caller.set(caller)


def reset_caller(token) -> None:
    _caller.reset(token)


def current_caller(default_tenant: str) -> Caller:
    caller = _caller.get()
    return caller if caller is not None else Caller(tenant=default_tenant)
