"""What every command of the query process (QueryService, CaseService) shares: its options,
the stub, the wrapper that turns statuses into messages and exit codes, paging."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, TextIO

import grpc

from ueba.cli import output
from ueba.cli.common import UsageError, explain
from ueba.cli.exits import EXIT_USAGE
from ueba.cli.output import say
from ueba.client.channel import add_channel_options, channel_config, open_channel
from ueba.v1 import query_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50054"


def query_stub(args, stub_class=query_pb2_grpc.QueryServiceStub) -> tuple[grpc.Channel, Any]:
    """A stub of one of the query process's services (QueryService, CaseService) at --address."""
    channel = open_channel(args.address, channel_config(args))
    return channel, stub_class(channel)


def explain_error(exc: grpc.RpcError, address: str) -> tuple[str, int]:
    return explain(exc, "query", address, "UEBA_QUERY_ADDRESS")


def command(fn: Callable[[Any, Any, TextIO], None], stub_class=query_pb2_grpc.QueryServiceStub) -> Callable[[Any], int]:
    def run(args) -> int:
        channel, stub = query_stub(args, stub_class)
        try:
            fn(args, stub, sys.stdout)
            return 0
        except grpc.RpcError as exc:
            message, code = explain_error(exc, args.address)
            print(message, file=sys.stderr)
            return code
        except UsageError as exc:
            print(f"ueba: {exc}", file=sys.stderr)
            return EXIT_USAGE
        finally:
            channel.close()

    return run


def pages(call: Callable, request, key: str, follow: bool, timeout: float) -> tuple[list, str, int | None]:
    """Items of one page, or of every page with `follow`; the next page token; the server's total, if it tells."""
    items: list = []
    while True:
        resp = call(request, timeout=timeout)
        items.extend(getattr(resp, key))
        token = resp.next_page_token
        if not follow or not token:
            total = resp.total_size if hasattr(resp, "total_size") else None
            return items, token, total
        request.page_token = token


def more_hint(shown: int, total: int | None, token: str, out: TextIO, capped: bool = False) -> None:
    if token or (total is not None and total > shown):
        of = f" of {total:,}{'+' if capped else ''}" if total is not None else ""
        say(f"{shown:,} shown{of}; --all for every one, or the next page with --page-token "
            "(next_page_token of -o json)", out)
    elif total is not None:
        say(f"{shown:,} shown of {total:,}", out)


def common_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--address", default=os.environ.get("UEBA_QUERY_ADDRESS", DEFAULT_ADDRESS),
                   help="query service host:port (default $UEBA_QUERY_ADDRESS or %(default)s)")
    output.add_output_option(p)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an answer")
    add_channel_options(p)
    return p


def leaf(sub, name: str, fn, help: str, common, stub_class=query_pb2_grpc.QueryServiceStub) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, parents=[common])
    p.set_defaults(func=command(fn, stub_class))
    return p
