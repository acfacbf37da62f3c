"""Errors that domain code raises, and the one place that turns them into gRPC statuses."""

from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager
from typing import Iterator

import grpc
import psycopg
import sqlalchemy.exc

log = logging.getLogger(__name__)

# The store cannot be reached or is overloaded: a client should retry later.
STORE_UNAVAILABLE = (psycopg.OperationalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError)


class DomainError(Exception):
    """An error whose message is meant for the caller; `code` is its gRPC status."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


def check_text(field: str, value: str, max_length: int = 256) -> str:
    """A request string Postgres can store and compare: no NUL, bounded length."""
    if "\x00" in value:
        raise InvalidArgument(f"{field}: contains a NUL character")
    if len(value) > max_length:
        raise InvalidArgument(f"{field}: longer than {max_length} characters")
    return value


def status_of(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    """The status and caller-safe message for an exception a servicer let escape.

    Only DomainError messages reach the caller as written. Anything else is
    logged in full here and answered with a reference to that log line, so no
    SQL, traceback or internal value ever leaves the server.
    """
    if isinstance(exc, DomainError):
        return exc.code, exc.message
    if isinstance(exc, STORE_UNAVAILABLE):
        log.warning("store unavailable", exc_info=exc, extra={"method": method})
        return grpc.StatusCode.UNAVAILABLE, "the store is unavailable; retry later"
    reference = uuid.uuid4().hex[:12]
    log.error("call failed", exc_info=exc, extra={"method": method, "reference": reference})
    return grpc.StatusCode.INTERNAL, f"internal error (reference {reference} in the server log)"


@contextmanager
def mapped_to_status(context: grpc.ServicerContext, method: str) -> Iterator[None]:
    """Ends the call with the status its exception deserves; a call already aborted keeps its status."""
    try:
        yield
    except Exception as exc:
        # context.abort() raises a bare Exception after setting the status:
        # that call has its answer already.
        if context.code() is not None:
            raise
        code, message = status_of(exc, method)
        context.abort(code, message)
