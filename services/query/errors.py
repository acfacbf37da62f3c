"""Errors domain code raises; the servicer turns each into a gRPC status."""

from __future__ import annotations

import grpc


class QueryError(Exception):
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(QueryError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(QueryError):
    code = grpc.StatusCode.NOT_FOUND


def check_text(field: str, value: str, max_length: int = 256) -> str:
    """A request string Postgres can store and compare: no NUL, bounded length."""
    if "\x00" in value:
        raise InvalidArgument(f"{field}: contains a NUL character")
    if len(value) > max_length:
        raise InvalidArgument(f"{field}: longer than {max_length} characters")
    return value
