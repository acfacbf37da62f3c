"""Reading log files record by record, with the byte offset after each record.

Offsets let the shipper resume after an interruption where the last
acknowledged record ended. A zip archive is read member by member (the OTRF
datasets are zips of JSON lines), a gzip file (most rotated logs) as its content; a CSV record may span lines when a quoted
cell holds newlines, so records are cut where the quotes balance.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from ueba.parsers import parser_for
from ueba.parsers.base import Counts, Event, ParseError, ParseOptions
from ueba.parsers.detect import DetectionError, classify_object, detect_text, kind_of

DETECT_LINES = 20


@dataclass
class Source:
    """One readable stream: a plain file or one member of a zip."""

    key: str  # the name people see: 'path' or 'path!member'
    size: int  # bytes of content; of a gzip file, what its trailer says (exact below 4 GiB)
    open: Callable[[], IO[bytes]]
    exact_size: bool = True


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _gzip_size(path: Path) -> int:
    """The uncompressed size in the gzip trailer (modulo 4 GiB, of the last member only)."""
    with open(path, "rb") as f:
        f.seek(-4, io.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def sources(path: str | Path) -> list[Source]:
    p = Path(path)
    if is_gzip(p):
        return [Source(str(p), _gzip_size(p), lambda: gzip.open(p, "rb"), exact_size=False)]
    if zipfile.is_zipfile(p):
        out = []
        with zipfile.ZipFile(p) as archive:
            members = [i for i in archive.infolist() if not i.is_dir()]
        for info in members:
            def opener(info=info) -> IO[bytes]:
                archive = zipfile.ZipFile(p)
                stream = archive.open(info)
                stream._ueba_archive = archive  # type: ignore[attr-defined]  # keep the archive open with the stream
                return stream
            out.append(Source(f"{p}!{info.filename}", info.file_size, opener))
        return out
    return [Source(str(p), p.stat().st_size, lambda: open(p, "rb"))]


@dataclass
class Record:
    line_no: int  # first line of the record, 1-based
    end_offset: int  # bytes from the start of the stream to just after the record
    value: str | dict[str, Any]


def _decode(raw: bytes, at_start: bool) -> str:
    if at_start and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return raw.decode("utf-8", errors="replace")


def head_lines(source: Source, n: int = DETECT_LINES) -> list[str]:
    lines: list[str] = []
    with source.open() as stream:
        for i, raw in enumerate(stream):
            if i >= n * 5 or len(lines) >= n:
                break
            text = _decode(raw, i == 0)
            if text.strip():
                lines.append(text)
    return lines


def _starts_array(source: Source) -> bool:
    with source.open() as stream:
        head = stream.read(1024)
    return _decode(head, True).lstrip().startswith("[")


def detect(source: Source) -> tuple[str, str]:
    if _starts_array(source):
        for record in iter_records(source, "json-array"):
            if isinstance(record.value, dict) and "__error__" not in record.value:
                fmt = classify_object(record.value)
                if fmt:
                    return fmt, "json-array"
            break
        raise DetectionError("a JSON array whose first element has no known shape")
    return detect_text(head_lines(source))


def iter_lines(stream: IO[bytes], start_offset: int = 0, start_line: int = 0) -> Iterator[Record]:
    offset, line_no = start_offset, start_line
    if start_offset:
        stream.seek(start_offset)
    for raw in stream:
        at_start = offset == 0
        offset += len(raw)
        line_no += 1
        text = _decode(raw, at_start).rstrip("\r\n")
        if text.strip():
            yield Record(line_no, offset, text)


def iter_csv(stream: IO[bytes], start_offset: int = 0, start_line: int = 0) -> Iterator[Record]:
    """Rows as dicts keyed by the header; `start_offset` must be a record boundary."""
    header: list[str] | None = None
    offset, line_no = 0, 0
    pending: list[str] = []
    first_line = 0
    for raw in stream:
        at_start = offset == 0
        offset += len(raw)
        line_no += 1
        if not pending:
            first_line = line_no
        pending.append(_decode(raw, at_start))
        text = "".join(pending)
        if text.count('"') % 2:
            continue  # inside a quoted cell that spans lines
        pending = []
        if not text.strip():
            continue
        row = next(csv.reader(io.StringIO(text)))
        if header is None:
            header = [h.strip() for h in row]
            continue
        if offset <= start_offset:
            continue
        if len(row) != len(header):
            yield Record(first_line, offset, {"__error__": f"{len(row)} cells where the header has {len(header)}"})
            continue
        yield Record(first_line, offset, dict(zip(header, row)))
    if pending and "".join(pending).strip():
        yield Record(first_line, offset, {"__error__": "unterminated quoted cell at end of file"})


def iter_json_array(stream: IO[bytes], start_offset: int = 0) -> Iterator[Record]:
    """Elements of one top-level JSON array (the Entra portal's 'Download JSON'), read whole."""
    raw = stream.read()
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    text = raw[bom:].decode("utf-8", errors="replace")
    decoder = json.JSONDecoder()
    i = text.index("[") + 1
    char_pos, byte_pos, line_no = 0, bom, 1

    def advance(to: int) -> None:
        nonlocal char_pos, byte_pos, line_no
        chunk = text[char_pos:to]
        byte_pos += len(chunk.encode("utf-8", errors="replace"))
        line_no += chunk.count("\n")
        char_pos = to

    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return
        advance(i)
        start_line = line_no
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            yield Record(start_line, len(raw), {"__error__": f"not JSON: {exc.msg}"})
            return
        advance(end)
        i = end
        if byte_pos > start_offset:
            yield Record(start_line, byte_pos, value if isinstance(value, dict) else {"__error__": "array element is not an object"})


def iter_records(source: Source, kind: str, start_offset: int = 0, start_line: int = 0) -> Iterator[Record]:
    stream = source.open()
    try:
        if kind == "json-array":
            yield from iter_json_array(stream, start_offset)
        elif kind == "csv":
            # CSV needs its header, so it is re-read and skipped up to the offset.
            yield from iter_csv(stream, start_offset, start_line)
        else:
            yield from iter_lines(stream, start_offset, start_line)
    finally:
        stream.close()
        archive = getattr(stream, "_ueba_archive", None)
        if archive is not None:
            archive.close()


@dataclass
class ParsedRecord:
    record: Record
    events: list[Event]
    error: str | None = None


def resolve_format(source: Source, fmt: str) -> tuple[str, str]:
    """(format, record kind) for a source; 'auto' detects from its first lines."""
    if fmt == "auto":
        return detect(source)
    if _starts_array(source):
        return fmt, "json-array"
    lines = head_lines(source, 1)
    return fmt, kind_of(fmt, lines[0] if lines else "")


def parse_records(records: Iterator[Record], fmt: str, options: ParseOptions) -> Iterator[ParsedRecord]:
    parser = parser_for(fmt, options)
    for record in records:
        if isinstance(record.value, dict) and "__error__" in record.value:
            yield ParsedRecord(record, [], record.value["__error__"])
            continue
        try:
            yield ParsedRecord(record, parser.parse(record.value))
        except ParseError as exc:
            yield ParsedRecord(record, [], str(exc))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a shape no parser rule foresaw
            yield ParsedRecord(record, [], f"unreadable record: {type(exc).__name__}: {exc}")


@dataclass
class FileReport:
    """Everything a file holds, for tests and `ueba ship --dry-run`."""

    format: str
    counts: Counts = field(default_factory=Counts)
    events: list[Event] = field(default_factory=list)


def read_file(path: str | Path, fmt: str = "auto", options: ParseOptions | None = None) -> FileReport:
    options = options or ParseOptions()
    report: FileReport | None = None
    for source in sources(path):
        try:
            source_fmt, kind = resolve_format(source, fmt)
        except DetectionError as exc:
            raise DetectionError(f"{source.key}: {exc}") from None
        if report is None:
            report = FileReport(source_fmt)
        for parsed in parse_records(iter_records(source, kind), source_fmt, options):
            report.counts.records += 1
            if parsed.error:
                report.counts.error(parsed.record.line_no, parsed.error)
            elif not parsed.events:
                report.counts.skipped += 1
            report.counts.events += len(parsed.events)
            report.events.extend(parsed.events)
    if report is None:
        raise DetectionError(f"{path}: no files in it")
    return report
