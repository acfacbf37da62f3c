"""Servicers under grpc_testing, with the status mapping the shared call interceptor applies."""

from __future__ import annotations

import inspect

from ueba.errors import status_of


class MappedServicer:
    """The servicer's methods, each ending in the status ueba.errors.status_of gives its exception.

    grpc_testing runs no interceptors and its context has no code(), which
    ueba.errors.mapped_to_status reads, so the mapping is applied here.
    """

    def __init__(self, servicer):
        self.servicer = servicer

    def __getattr__(self, name):
        method = getattr(self.servicer, name)
        if inspect.isgeneratorfunction(method):
            def stream(request, context):
                try:
                    yield from method(request, context)
                except Exception as exc:
                    context.abort(*status_of(exc, name))
            return stream

        def unary(request, context):
            try:
                return method(request, context)
            except Exception as exc:
                context.abort(*status_of(exc, name))
        return unary
