"""Rendering command results for people (tables) and for scripts (JSON, CSV)."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence, TextIO

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

FORMATS = ("table", "json", "csv")
MAX_CELL = 60


def when(ts: Timestamp | None, message: Message | None = None, field: str | None = None) -> str:
    """A timestamp as `2026-10-01 12:00:00Z`, or '' when unset."""
    if message is not None and field is not None and not message.HasField(field):
        return ""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return ts.ToDatetime(tzinfo=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def day(ts: Timestamp) -> str:
    return ts.ToDatetime(tzinfo=timezone.utc).strftime("%Y-%m-%d")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO = sys.stdout) -> None:
    cells = [[_text(v).replace("\n", " ") for v in row] for row in rows]
    cells = [[c if len(c) <= MAX_CELL else c[: MAX_CELL - 1] + "…" for c in row] for row in cells]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip(), file=out)
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)
    if not cells:
        print("(none)", file=out)


def message_json(message: Message | Iterable[Message], out: TextIO = sys.stdout) -> None:
    if isinstance(message, Message):
        body: Any = MessageToDict(message, preserving_proto_field_name=True)
    else:
        body = [MessageToDict(m, preserving_proto_field_name=True) for m in message]
    json.dump(body, out, indent=2, sort_keys=False)
    out.write("\n")


def csv_rows(rows: Iterable[Sequence[Any]], headers: Sequence[str], out: TextIO = sys.stdout) -> None:
    writer = csv.writer(out)
    writer.writerow(headers)
    for row in rows:
        writer.writerow([_text(v) if not isinstance(v, (int, float)) or isinstance(v, bool) else v for v in row])


def emit(fmt: str, message: Message | list[Message], rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO = sys.stdout) -> None:
    """One result in the chosen format: the message itself as JSON, else its rows."""
    if fmt == "json":
        message_json(message, out)
    elif fmt == "csv":
        csv_rows(rows, headers, out)
    else:
        table(rows, headers, out)
