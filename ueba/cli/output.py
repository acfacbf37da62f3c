"""What every command prints: tables that fit the terminal, JSON, NDJSON and CSV for scripts.

Values that came from events (user names, descriptions, hosts) are shown, never obeyed: table
text has its control characters written out as escapes, CSV cells that a spreadsheet would run
as a formula start with a quote.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import re
import shutil
import sys
import textwrap
import unicodedata
from datetime import date, datetime, timezone
from typing import Any, Iterable, Sequence, TextIO

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

FORMATS = ("table", "json", "csv", "ndjson")
GAP = 2  # spaces between table columns
MIN_COLUMN = 4  # a column is shrunk below this only when nothing else is left to shrink

# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# --- options ------------------------------------------------------------------------------------

def add_output_option(parser: argparse.ArgumentParser, *, inherited: bool = False) -> None:
    """`--output/-o table|json|csv|ndjson`. With `inherited`, an unset option keeps a value
    given before the subcommand (`ueba profiles -o json list` and `ueba profiles list -o json`)."""
    parser.add_argument("--output", "-o", choices=FORMATS, default=argparse.SUPPRESS if inherited else "table",
                        help="table (default), json, csv or ndjson")
    # Earlier releases spelled JSON output --json on some commands.
    parser.add_argument("--json", dest="output", action="store_const", const="json",
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


# --- text for people ------------------------------------------------------------------------------

def printable(value: Any) -> str:
    """One line of text safe for a terminal: control characters shown as escapes, never sent."""
    text = _plain(value)
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    return _CONTROL.sub(lambda m: _escape(m.group()), text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def display_width(text: str) -> int:
    return sum(_char_width(ch) for ch in text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def clip(text: str, width: int) -> str:
    """`text` cut to `width` columns with an ellipsis, at a word boundary when one is near."""
    if display_width(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    kept, used = [], 0
    for ch in text:
        w = _char_width(ch)
        if used + w > width - 1:
            break
        kept.append(ch)
        used += w
    cut = "".join(kept)
    space = cut.rfind(" ")
    if space >= width * 2 // 3:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def terminal_width(out: TextIO | None = None) -> int | None:
    """Columns to fit: $COLUMNS when set, the terminal's width when writing to one, else no limit."""
    raw = os.environ.get("COLUMNS", "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    stream = out or sys.stdout
    try:
        if stream.isatty():
            return shutil.get_terminal_size().columns
    except (AttributeError, ValueError, OSError):
        pass
    return None


def fit(widths: Sequence[int], limit: int | None, fixed: Sequence[int] = ()) -> list[int]:
    """Column widths that fit `limit`: the widest column gives way first; `fixed` columns (ids a
    reader copies) only when nothing else can."""
    widths = list(widths)
    if limit is None or not widths:
        return widths
    excess = sum(widths) + GAP * (len(widths) - 1) - limit
    for floor, shrinkable in ((MIN_COLUMN, [i for i in range(len(widths)) if i not in fixed]),
                              (1, list(range(len(widths))))):
        while excess > 0 and shrinkable:
            i = max(shrinkable, key=lambda k: widths[k])
            if widths[i] <= floor:
                break
            widths[i] -= 1
            excess -= 1
    return widths


def _columns_that_fit(natural: Sequence[int], limit: int | None, fixed: Sequence[int], optional: Sequence[int]) -> list[int]:
    """Indexes of the columns to show: `optional` ones are left out, in order, while even their
    narrowest widths would not fit."""
    shown = list(range(len(natural)))
    for drop in optional:
        need = sum(natural[i] if i in fixed else min(natural[i], 12) for i in shown) + GAP * (len(shown) - 1)
        if limit is None or need <= limit:
            break
        shown.remove(drop)
    return shown


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO | None = None, width: int | None = None,
          fixed: Sequence[str] = (), optional: Sequence[str] = ()) -> None:
    """Rows under upper-case headers, numbers to the right, fitted to the terminal: `optional`
    columns are left out first (in that order), then the widest columns are cut with an ellipsis;
    `fixed` columns are cut last."""
    out = out or sys.stdout
    limit = width if width is not None else terminal_width(out)
    cells = [[printable(v) for v in row] for row in rows]
    heads = [printable(h).upper() for h in headers]
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows)
               for i in range(len(headers))]
    natural = [max([display_width(h)] + [display_width(r[i]) for r in cells]) for i, h in enumerate(heads)]
    fixed_at = [headers.index(h) for h in fixed]
    shown = _columns_that_fit(natural, limit, fixed_at, [headers.index(h) for h in optional])
    widths = fit([natural[i] for i in shown], limit, [shown.index(i) for i in fixed_at if i in shown])
    for row in [heads, *cells]:
        line = (" " * GAP).join(_pad(clip(row[i], w), w, numeric[i] and row is not heads) for i, w in zip(shown, widths))
        print(line.rstrip(), file=out)
    if not cells:
        print("(none)", file=out)


def say(text: str = "", out: TextIO | None = None, indent: str = "") -> None:
    """Sentences for people, a paragraph per line of `text`: made printable and wrapped between
    words to the terminal."""
    out = out or sys.stdout
    limit = terminal_width(out)
    for paragraph in text.split("\n"):
        paragraph = printable(paragraph)
        if limit is None or display_width(paragraph) <= limit:
            print(paragraph, file=out)
            continue
        for line in textwrap.wrap(paragraph, width=limit, subsequent_indent=indent or "  ", break_on_hyphens=False):
            print(clip(line, limit), file=out)


def fields(pairs: Sequence[tuple[str, Any]], out: TextIO | None = None) -> None:
    """`name  value` lines (one record shown whole), values wrapped to the terminal."""
    out = out or sys.stdout
    limit = terminal_width(out)
    key_width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        text = printable(value)
        room = None if limit is None else max(8, limit - key_width - GAP)
        lines = textwrap.wrap(text, width=room, break_on_hyphens=False) if room and text else [text]
        for i, line in enumerate(lines):
            label = key.ljust(key_width) if i == 0 else " " * key_width
            print(f"{label}{' ' * GAP}{line if room is None else clip(line, room)}".rstrip(), file=out)


# --- data for scripts ------------------------------------------------------------------------------

def to_data(value: Any) -> Any:
    """JSON-ready data: snake_case fields, every field present (zeros too), 64-bit integers as
    numbers, enums as the words the tables use (`high`), times as RFC 3339 strings or null."""
    if isinstance(value, Message):
        return _message(value)
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _message(m: Message) -> Any:
    name = m.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        return timestamp(m)  # type: ignore[arg-type]
    if name in ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"):
        return _whole_numbers(MessageToDict(m))
    if name == "google.protobuf.Duration":
        return m.seconds + m.nanos / 1e9  # type: ignore[attr-defined]
    body: dict[str, Any] = {}
    for f in m.DESCRIPTOR.fields:
        v = getattr(m, f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            value_field = f.message_type.fields_by_name["value"]
            body[f.name] = {k: _field(value_field, x) for k, x in v.items()}
        elif f.is_repeated:
            body[f.name] = [_field(f, x) for x in v]
        elif f.type == FieldDescriptor.TYPE_MESSAGE and not m.HasField(f.name):
            body[f.name] = None
        else:
            body[f.name] = _field(f, v)
    return body


def _whole_numbers(value: Any) -> Any:
    """Struct numbers are doubles; a count of 4 reads better as 4 than 4.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _field(f: FieldDescriptor, v: Any) -> Any:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(v)
    if f.type == FieldDescriptor.TYPE_ENUM:
        return enum_word(f.enum_type, v)
    if f.type == FieldDescriptor.TYPE_FLOAT:
        return float(f"{v:.7g}")  # float32: no 0.30000001192092896
    if f.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(v).decode()
    return v


def enum_word(enum_type, number: int) -> str:
    """`RISK_LEVEL_HIGH` as `high`; the unspecified value as ''."""
    value = enum_type.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum_type.name).upper() + "_"
    word = value.name.removeprefix(prefix).lower()
    return "" if word == "unspecified" else word


def timestamp(ts: Timestamp) -> str | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")


def page(key: str, items: Sequence[Any], next_page_token: str = "", total_size: int | None = None) -> dict[str, Any]:
    """The one shape of every list in JSON, one page or `--all`: {key: [...], next_page_token,
    total_size}; total_size is null when the service does not count and more pages follow."""
    if total_size is None and not next_page_token:
        total_size = len(items)
    return {key: list(items), "next_page_token": next_page_token, "total_size": total_size}


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: formulas (=, +, -, @, tab, CR first) get a leading quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    text = value.astimezone(timezone.utc).isoformat() if isinstance(value, datetime) else str(value)
    text = _CONTROL.sub(lambda m: m.group() if m.group() in "\n\t\r" else _escape(m.group()), text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_rows(rows: Iterable[Sequence[Any]], headers: Sequence[str], out: TextIO | None = None) -> None:
    writer = csv.writer(out or sys.stdout)
    writer.writerow([csv_cell(h) for h in headers])
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])


def message_json(value: Any, out: TextIO | None = None) -> None:
    json.dump(to_data(value), out or sys.stdout, indent=2, ensure_ascii=False)
    (out or sys.stdout).write("\n")


def emit(fmt: str, data: Any, rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO | None = None,
         items: Sequence[Any] | None = None) -> None:
    """One result in the chosen format. `data` is what JSON shows; `items` what NDJSON writes one
    per line (default: `data`'s elements when it is a list, else `data`); tables and CSV show `rows`."""
    out = out or sys.stdout
    if fmt == "json":
        message_json(data, out)
    elif fmt == "ndjson":
        lines = items if items is not None else data if isinstance(data, (list, tuple)) else [data]
        for item in lines:
            out.write(json.dumps(to_data(item), ensure_ascii=False, separators=(",", ":")) + "\n")
    elif fmt == "csv":
        csv_rows(rows, headers, out)
    else:
        table(rows, headers, out)


# --- words ------------------------------------------------------------------------------------------

def when(ts: Timestamp | None, message: Message | None = None, field: str | None = None) -> str:
    """A timestamp as `2026-10-01 12:00:00Z`, or '' when unset."""
    if message is not None and field is not None and not message.HasField(field):
        return ""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return ts.ToDatetime(tzinfo=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def day(ts: Timestamp) -> str:
    return ts.ToDatetime(tzinfo=timezone.utc).strftime("%Y-%m-%d")

