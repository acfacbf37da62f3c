"""What the service commands share: the address, token and output options, time ranges, and
turning a failed call into one line on stderr and an exit code."""

from __future__ import annotations

import argparse
import os
import re
from datetime import datetime, timedelta, timezone

import grpc

from ueba.cli.exits import EXIT_FAILED, EXIT_UNREACHABLE
from ueba.cli.output import add_output_option, printable

_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class UsageError(Exception):
    pass


def service_options(parser: argparse.ArgumentParser, service: str, env: str, default: str, *,
                    inherited: bool = False, role: str = "admin") -> None:
    """--address, --token and --output. With `inherited` (on each action of a command group) an
    option left out keeps the value given before the action: `ueba profiles -o json list` and
    `ueba profiles list -o json` both work."""
    def value(v):
        return argparse.SUPPRESS if inherited else v
    parser.add_argument("--address", default=value(os.environ.get(env, default)),
                        help=f"{service} host:port (default ${env} or {default})")
    parser.add_argument("--token", default=value(os.environ.get("UEBA_TOKEN")),
                        help=f"bearer token ({role} role; default $UEBA_TOKEN)")
    add_output_option(parser, inherited=inherited)


def add_range_options(parser: argparse.ArgumentParser, *, since: bool = True) -> None:
    """--since AGE, --from TIME, --to TIME: the one spelling of a time range (--start/--end are kept as aliases)."""
    if since:
        parser.add_argument("--since", help="only the last 30m, 24h, 7d, ...")
    parser.add_argument("--from", "--start", dest="start", help="start, ISO date or time (UTC unless it says)")
    parser.add_argument("--to", "--end", dest="end", help="end (exclusive), ISO date or time")


def duration(text: str) -> timedelta:
    m = _AGE.match(text.strip().lower())
    if not m:
        raise UsageError(f"{text!r} is not a duration like 30m, 24h, 7d")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def moment(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO date or time (2026-10-01 or 2026-10-01T12:00Z)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def range_of(args) -> tuple[datetime | None, datetime | None]:
    """The (start, end) that --since, --from and --to give; None where they give nothing."""
    start = end = None
    if getattr(args, "since", None):
        start = datetime.now(timezone.utc) - duration(args.since)
    if getattr(args, "start", None):
        start = moment(args.start)
    if getattr(args, "end", None):
        end = moment(args.end)
    return start, end


def explain(exc: grpc.RpcError, service: str, address: str, env: str) -> tuple[str, int]:
    """One line for stderr and the exit code of a failed call."""
    code = exc.code() if hasattr(exc, "code") else None
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return (f"ueba: cannot reach the {service} service at {address} ({code.name.lower()}); "
                f"is it running? set --address or {env}"), EXIT_UNREACHABLE
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return printable(f"ueba: {code.name if code else 'error'}: {details}"), EXIT_FAILED
