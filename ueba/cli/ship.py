"""`ueba ship FILE...`: parse log files and stream their events to ingest.

    ueba ship /var/log/auth.log /var/log/auth.log.2.gz security.json.zip --address ingest:50051
    zcat old/*.gz | ueba ship -

Detects each file's format (or takes --format), parses it record by record,
streams the events in batches with IngestClient (which reconnects and resends
unacknowledged batches with back-off), and ends with a summary. Resume state is
kept per content and destination (ShipState); the history-import guide is in
README "Log files".
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from ueba.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, HELP
from ueba.cli.output import add_output_option, emit, printable
from ueba.client.channel import add_channel_options, channel_config
from ueba.parsers import FORMATS, INDEPENDENT_FORMATS
from ueba.parsers.base import Event, ParseOptions, zone
from ueba.parsers.detect import DetectionError
from ueba.parsers.files import ParsedRecord, Source, iter_records, parse_records, resolve_format, sources
from ueba.parsers.parallel import MIN_PARALLEL_BYTES, default_workers, parse_in_parallel, read_ahead

STATE_VERSION = 2
CHUNK_BATCHES = 8  # batches per acknowledged chunk: the unit of resume
MAX_LISTED = 10
MAX_KEPT_REJECTIONS = 100_000  # rejected lines remembered per file for --resend-rejected
FINGERPRINT_BYTES = 4096
STDIN = "-"


@dataclass
class FileSummary:
    key: str
    format: str = ""
    read: int = 0
    events: int = 0
    skipped: int = 0
    unparseable: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    resumed_from_line: int = 0
    resent_lines: int = 0  # rejected lines of earlier runs sent again (--resend-rejected)
    pending_rejected: int = 0  # rejected lines, of this run or earlier ones, not stored yet
    errors: list[tuple[int, str]] = field(default_factory=list)
    rejections: list[tuple[int, str]] = field(default_factory=list)
    rejection_reasons: Counter = field(default_factory=Counter)


@dataclass
class ShipSummary:
    files: list[FileSummary] = field(default_factory=list)
    failed: str = ""  # why the run stopped early, if it did
    interrupted: bool = False

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)


# -- resume state --------------------------------------------------------------


def default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "ueba" / "ship"


def fingerprint(source: Source) -> str:
    """The content's identity: a digest of its first block. A rotated or replaced file starts
    over; the same content under another name or path resumes."""
    with source.open() as stream:
        return hashlib.sha256(stream.read(FINGERPRINT_BYTES)).hexdigest()


class ShipState:
    """How far one content got to one destination, and which of its lines ingest rejected.

    Kept in `state_dir` under a digest of (destination, content fingerprint), so shipping the
    same file to another server starts from the beginning, and a copy of the file elsewhere
    resumes where the original got to.
    """

    def __init__(self, state_dir: Path, destination: str, identity: str):
        digest = hashlib.sha256(f"{destination}\0{identity}".encode()).hexdigest()[:32]
        self.path = state_dir / f"{digest}.json"
        self.destination = destination
        self.identity = identity
        self.saved: dict = {}
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") == STATE_VERSION and data.get("identity") == identity:
                self.saved = data
        except (OSError, json.JSONDecodeError):
            self.saved = {}

    @property
    def rejected(self) -> dict[int, str]:
        return {int(k): v for k, v in self.saved.get("rejected", {}).items()}

    def resume_point(self, source: Source) -> tuple[int, int]:
        offset = int(self.saved.get("offset", 0))
        if source.exact_size and offset > source.size:  # shorter than what was shipped: not the same file
            return 0, 0
        return offset, int(self.saved.get("line", 0))

    def save(self, source: Source, offset: int, line: int, fmt: str, rejected: dict[int, str]) -> None:
        kept = dict(sorted(rejected.items())[:MAX_KEPT_REJECTIONS])
        self.saved = {
            "version": STATE_VERSION, "identity": self.identity, "destination": self.destination,
            "source": source.key, "offset": offset, "line": line, "size": source.size, "format": fmt,
            "rejected": {str(k): v for k, v in kept.items()},
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.saved, indent=1))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.saved = {}
        self.path.unlink(missing_ok=True)


# -- shipping -------------------------------------------------------------------


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1000, file=sys.stderr,
                disable=not enabled, leave=False)


@dataclass
class _Shipper:
    """Sends one source's events in acknowledged chunks and keeps its state up to date."""

    source: Source
    fs: FileSummary
    state: ShipState | None  # None: a dry run
    client: object
    chunk_size: int
    progress: Callable[[int], None] | None
    rejected: dict[int, str] = field(default_factory=dict)

    def send(self, events: list[Event], lines: list[int]) -> set[int]:
        """Sends events (of the given record lines); the lines ingest rejected."""
        if self.state is None or not events:
            return set()
        totals = self.client.send(events, progress=self.progress)
        fs = self.fs
        fs.sent += totals.sent
        fs.accepted += totals.accepted
        fs.duplicates += totals.duplicates
        fs.rejected += totals.rejected
        refused: set[int] = set()
        for r in totals.rejections:
            reason = f"{r.field}: {r.reason}"
            line = lines[r.index]
            refused.add(line)
            self.rejected[line] = reason
            fs.rejection_reasons[reason] += 1
            if len(fs.rejections) < MAX_LISTED:
                fs.rejections.append((line, reason))
        return refused

    def save(self, offset: int, line: int) -> None:
        if self.state is not None:
            self.state.save(self.source, offset, line, self.fs.format, self.rejected)

    def chunks(self, parsed: Iterator[ParsedRecord]) -> Iterator[tuple[list[Event], list[int], int, int]]:
        """(events, their lines, offset and line reached) per chunk of about `chunk_size` events."""
        events: list[Event] = []
        lines: list[int] = []
        offset = line = 0
        for p in parsed:
            events.extend(p.events)
            lines.extend([p.record.line_no] * len(p.events))
            offset, line = p.record.end_offset, p.record.line_no
            if len(events) >= self.chunk_size:
                yield events, lines, offset, line
                events, lines = [], []
        yield events, lines, offset, line


def _resend_rejected(shipper: _Shipper, kind: str, options: ParseOptions, upto: int) -> None:
    """Sends again the events of the lines ingest rejected before (up to the saved offset)."""
    wanted = dict(shipper.rejected)
    if not wanted:
        return
    records = (r for r in iter_records(shipper.source, kind) if r.end_offset <= upto and r.line_no in wanted)
    for events, lines, _offset, _line in shipper.chunks(parse_records(records, shipper.fs.format, options)):
        refused = shipper.send(events, lines)
        for line in set(lines) - refused:
            shipper.rejected.pop(line, None)
        shipper.fs.resent_lines += len(set(lines))


def _parsed(source: Source, kind: str, fmt: str, options: ParseOptions, offset: int, line: int,
            workers: int) -> Iterator[ParsedRecord]:
    """The source's records from a resume point, parsed on `workers` processes where that pays."""
    records = iter_records(source, kind, offset, line)
    if workers > 1 and fmt in INDEPENDENT_FORMATS and source.size - offset >= MIN_PARALLEL_BYTES:
        return parse_in_parallel(records, fmt, options, workers)
    return parse_records(records, fmt, options)


def _ship_source(source: Source, fs: FileSummary, state: ShipState | None, client, kind: str, options: ParseOptions,
                 chunk_size: int, show_progress: bool, progress, resend_rejected: bool, workers: int) -> None:
    shipper = _Shipper(source, fs, state, client, chunk_size, progress)
    offset, line = (0, 0) if state is None else state.resume_point(source)
    if state is not None:
        shipper.rejected = state.rejected
    fs.resumed_from_line = line
    if resend_rejected and state is not None:
        _resend_rejected(shipper, kind, options, offset)
        shipper.save(offset, line)
    bar = _bar(max(0, source.size - offset), Path(source.key.rsplit("!", 1)[-1]).name, show_progress)
    shown = offset

    def counted(parsed: Iterator[ParsedRecord]) -> Iterator[ParsedRecord]:
        nonlocal shown
        for p in parsed:
            fs.read += 1
            if p.error:
                fs.unparseable += 1
                if len(fs.errors) < MAX_LISTED:
                    fs.errors.append((p.record.line_no, p.error))
            elif not p.events:
                fs.skipped += 1
            fs.events += len(p.events)
            if p.record.end_offset - shown >= 1 << 20:  # reading progress between acknowledged chunks
                bar.update(p.record.end_offset - shown)
                shown = p.record.end_offset
            yield p

    try:
        parsed = counted(_parsed(source, kind, fs.format, options, offset, line, workers))
        chunks = shipper.chunks(parsed)
        with closing(chunks if state is None else read_ahead(chunks)) as ahead:
            for events, lines, reached, reached_line in ahead:
                shipper.send(events, lines)
                if reached > offset:
                    offset, line = reached, reached_line
                shipper.save(offset, line)
                bar.update(max(0, offset - shown))
                shown = max(shown, offset)
        if kind in ("lines", "json-array") and source.exact_size and offset < source.size:
            shipper.save(source.size, line)  # only blank lines after the last record
    finally:
        bar.close()
        fs.pending_rejected = len(shipper.rejected)


def ship_files(
    paths: list[Path],
    client,
    *,
    fmt: str = "auto",
    options: ParseOptions | None = None,
    batch_size: int = 1000,
    state_dir: Path | None = None,
    destination: str = "",
    restart: bool = False,
    resend_rejected: bool = False,
    dry_run: bool = False,
    show_progress: bool = False,
    progress: Callable[[int], None] | None = None,
    names: dict[str, str] | None = None,
    workers: int = 1,
) -> ShipSummary:
    """Ships every file; `client` is an IngestClient (unused with dry_run). `destination` (the
    ingest address) keys the resume state with the content; `names` shows a path as another
    name (standard input's spool file as '-').

    `progress(n)` is called with each acknowledged batch's size, as IngestClient does.
    """
    options = options or ParseOptions()
    state_dir = state_dir or default_state_dir()
    summary = ShipSummary()
    try:
        for path in paths:
            for source in sources(path):
                label = source.key
                for original, shown in (names or {}).items():
                    label = label.replace(original, shown, 1)
                fs = FileSummary(label)
                summary.files.append(fs)
                try:
                    fs.format, kind = resolve_format(source, fmt)
                except DetectionError as exc:
                    fs.errors.append((0, f"format: {exc}"))
                    fs.unparseable += 1
                    continue
                state = None if dry_run else ShipState(state_dir, destination, fingerprint(source))
                if state is not None and restart:
                    state.clear()
                _ship_source(source, fs, state, client, kind, options, batch_size * CHUNK_BATCHES, show_progress,
                             progress, resend_rejected, workers)
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.failed = "interrupted; run again to resume from the last acknowledged record"
    except Exception as exc:  # delivery failed for good (IngestError), or the file went away or is truncated
        from ueba.client.ingest import IngestError

        if not isinstance(exc, (IngestError, OSError, EOFError)):
            raise
        summary.failed = f"{exc}; run again to resume from the last acknowledged record"
    return summary


def format_summary(summary: ShipSummary, dry_run: bool = False) -> str:
    lines = []
    for f in summary.files:
        resumed = f", resumed after line {f.resumed_from_line}" if f.resumed_from_line else ""
        lines.append(
            f"{f.key} ({f.format or '?'}): read {f.read}, parsed {f.events} events, "
            f"{f.skipped} not account activity, {f.unparseable} unparseable{resumed}"
        )
        for line_no, reason in f.errors:
            lines.append(f"  unparseable line {line_no}: {reason}")
        if f.unparseable > len(f.errors):
            lines.append(f"  ... and {f.unparseable - len(f.errors)} more unparseable")
        for line_no, reason in f.rejections:
            lines.append(f"  rejected line {line_no}: {reason}")
        for reason, n in f.rejection_reasons.most_common(MAX_LISTED):
            if n > 1:
                lines.append(f"  rejected {n}x: {reason}")
        if f.resent_lines:
            lines.append(f"  {f.resent_lines} rejected lines of earlier runs sent again")
        if f.pending_rejected:
            lines.append(f"  {f.pending_rejected} rejected lines not stored; fix the cause (see docs), then "
                         "ship again with --resend-rejected")
    t = summary.total
    if dry_run:
        lines.append(f"total: read {t('read')}, parsed {t('events')}, unparseable {t('unparseable')} (dry run, nothing sent)")
    else:
        lines.append(
            f"total: read {t('read')}, parsed {t('events')}, unparseable {t('unparseable')}, sent {t('sent')}, "
            f"accepted {t('accepted')}, duplicates {t('duplicates')}, rejected {t('rejected')}"
        )
    if summary.failed:
        lines.append(f"stopped: {summary.failed}")
    return "\n".join(printable(line) for line in lines)


def summary_data(summary: ShipSummary) -> dict:
    names = ("read", "events", "skipped", "unparseable", "sent", "accepted", "duplicates", "rejected",
             "resent_lines", "pending_rejected")
    return {
        "files": [{"file": f.key, "format": f.format, **{n: getattr(f, n) for n in names},
                   "resumed_from_line": f.resumed_from_line,
                   "unparseable_lines": [{"line": n, "reason": r} for n, r in f.errors],
                   "rejected_lines": [{"line": n, "reason": r} for n, r in f.rejections]} for f in summary.files],
        "total": {n: summary.total(n) for n in names},
        "stopped": summary.failed,
    }


def exit_code(summary: ShipSummary) -> int:
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.failed:
        return EXIT_FAILED
    if summary.total("pending_rejected"):
        return EXIT_PARTIAL
    return EXIT_OK  # unparseable lines are reported, not failures: the file is what it is


def register(sub) -> None:
    import argparse

    p = sub.add_parser(
        "ship",
        help="parse log files and stream their events to ingest",
        description="Parse log files (plain, gzip or zip; '-' for standard input) and stream their events to the "
                    "ingest service, resumably: the state is kept per content and destination.",
        epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="log files; '-' reads standard input")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS), help="log format (default: detect per file)")
    p.add_argument("--address", default=os.environ.get("UEBA_INGEST_ADDRESS", "127.0.0.1:50051"), help="ingest host:port")
    p.add_argument("--batch-size", type=int, default=1000, help="events per batch (default 1000)")
    p.add_argument("--year", type=int, default=None, help="year of syslog lines that have none (default: current, rolled back for future dates)")
    p.add_argument("--timezone", default="UTC", help="zone of timestamps without one: IANA name or +HH:MM (default UTC)")
    p.add_argument("--state-dir", type=Path, default=None,
                   help="where resume state is kept (default $XDG_STATE_HOME/ueba/ship, ~/.local/state/ueba/ship)")
    p.add_argument("--restart", action="store_true", help="ignore saved state and ship from the start")
    p.add_argument("--resend-rejected", action="store_true",
                   help="send again the lines ingest rejected in earlier runs (after fixing the cause)")
    p.add_argument("--dry-run", action="store_true", help="parse and summarise without sending")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="processes that parse files over 8 MB while batches are sent (default: one per CPU but one, at most 8; 1 parses in line)")
    p.add_argument("--token", default=os.environ.get("UEBA_TOKEN"), help="bearer token (agent role)")
    p.add_argument("--retries", type=int, default=10, help="reconnect attempts before giving up (default 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_output_option(p)
    add_channel_options(p, token=False)
    p.set_defaults(func=run)


def _spool_stdin(directory: Path) -> Path:
    """Standard input in a file: detecting the format and resuming both read the start again."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix="stdin-", delete=False) as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
    return Path(spool.name)


def run(args) -> int:
    if args.batch_size < 1:
        print("--batch-size: at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.workers < 1:
        print("--workers: at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        tz = zone(args.timezone)
    except ValueError as exc:
        print(f"--timezone: {exc}", file=sys.stderr)
        return EXIT_USAGE
    missing = [f for f in args.files if f != STDIN and not Path(f).is_file()]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    state_dir = args.state_dir or default_state_dir()
    spool = _spool_stdin(state_dir / "spool") if STDIN in args.files else None
    paths = [spool if f == STDIN else Path(f) for f in args.files]
    names = {str(spool): STDIN} if spool else None
    options = ParseOptions(year=args.year, timezone=tz)
    show = not args.no_progress and sys.stderr.isatty()
    started = time.monotonic()
    try:
        if args.dry_run:
            summary = ship_files(paths, None, fmt=args.format, options=options, batch_size=args.batch_size,
                                 dry_run=True, names=names, workers=args.workers)
        else:
            from ueba.client.ingest import IngestClient

            with IngestClient(args.address, batch_size=args.batch_size, token=args.token, max_attempts=args.retries,
                              channel=channel_config(args)) as client:
                summary = ship_files(paths, client, fmt=args.format, options=options, batch_size=args.batch_size,
                                     state_dir=state_dir, destination=args.address, restart=args.restart,
                                     resend_rejected=args.resend_rejected, show_progress=show, names=names,
                                     workers=args.workers)
    finally:
        if spool is not None:
            spool.unlink(missing_ok=True)
    if args.output == "table":
        print(format_summary(summary, args.dry_run))
    else:
        data = summary_data(summary)
        emit(args.output, data, [[f["file"], *list(f.values())[1:12]] for f in data["files"]],
             ["file", "format", "read", "events", "skipped", "unparseable", "sent", "accepted", "duplicates", "rejected",
              "resent_lines", "pending_rejected"], items=data["files"])
    print(f"took {time.monotonic() - started:.1f}s", file=sys.stderr)
    return exit_code(summary)
