"""`ueba ship FILE...`: parse log files and stream their events to ingest.

    ueba ship /var/log/auth.log security.json.zip --address ingest:50051

Detects each file's format (or takes --format), parses it record by record,
streams the events in batches with IngestClient (which reconnects and resends
unacknowledged batches with back-off), and ends with a summary. After every
acknowledged chunk the byte offset reached is saved in a small state file
(FILE.ueba-ship.json next to the file, or under --state-dir), so a run that is
interrupted resumes where the acknowledged data ends; anything resent past that
point carries the same event ids and is stored once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ueba.client.channel import add_channel_options, channel_config
from ueba.parsers import FORMATS
from ueba.parsers.base import Event, ParseOptions, zone
from ueba.parsers.detect import DetectionError
from ueba.parsers.files import Source, iter_records, parse_records, resolve_format, sources

STATE_VERSION = 1
CHUNK_BATCHES = 8  # batches per acknowledged chunk: the unit of resume
MAX_LISTED = 10


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


def _identity(source: Source) -> str:
    """A fingerprint of the file's start: a rotated or replaced file starts over."""
    with source.open() as stream:
        return hashlib.sha256(stream.read(4096)).hexdigest()


def state_path(path: Path, state_dir: Path | None) -> Path:
    if state_dir is not None:
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        return state_dir / f"{path.name}.{digest}.ueba-ship.json"
    beside = path.with_name(path.name + ".ueba-ship.json")
    if os.access(path.parent, os.W_OK):
        return beside
    # Read-only log folders: keep the state in the user's state directory.
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "ueba" / "ship"
    return state_path(path, base)


class ShipState:
    def __init__(self, path: Path):
        self.path = path
        self.sources: dict[str, dict] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
                if data.get("version") == STATE_VERSION:
                    self.sources = data.get("sources", {})
            except (OSError, json.JSONDecodeError):
                self.sources = {}

    def resume_point(self, source: Source, identity: str) -> tuple[int, int]:
        saved = self.sources.get(source.key)
        if not saved or saved.get("identity") != identity or saved.get("offset", 0) > source.size:
            return 0, 0
        return int(saved["offset"]), int(saved.get("line", 0))

    def save(self, source: Source, identity: str, offset: int, line: int, fmt: str) -> None:
        self.sources[source.key] = {
            "offset": offset,
            "line": line,
            "size": source.size,
            "identity": identity,
            "format": fmt,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": STATE_VERSION, "sources": self.sources}, indent=1))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.sources = {}
        if self.path.exists():
            self.path.unlink()


# -- shipping -------------------------------------------------------------------


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr, disable=not enabled, leave=False)


def ship_files(
    paths: list[Path],
    client,
    *,
    fmt: str = "auto",
    options: ParseOptions | None = None,
    batch_size: int = 1000,
    state_dir: Path | None = None,
    restart: bool = False,
    dry_run: bool = False,
    show_progress: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ShipSummary:
    """Ships every file; `client` is an IngestClient (unused with dry_run).

    `progress(n)` is called with each acknowledged batch's size, as IngestClient does.
    """
    options = options or ParseOptions()
    summary = ShipSummary()
    chunk_size = batch_size * CHUNK_BATCHES
    try:
        for path in paths:
            state = ShipState(state_path(path, state_dir))
            if restart:
                state.clear()
            for source in sources(path):
                fs = FileSummary(source.key)
                summary.files.append(fs)
                try:
                    fs.format, kind = resolve_format(source, fmt)
                except DetectionError as exc:
                    fs.errors.append((0, f"format: {exc}"))
                    fs.unparseable += 1
                    continue
                identity = _identity(source)
                offset, line = (0, 0) if dry_run else state.resume_point(source, identity)
                fs.resumed_from_line = line
                bar = _bar(source.size - offset, Path(source.key.rsplit("!", 1)[-1]).name, show_progress)
                shown = offset
                pending: list[Event] = []
                pending_lines: list[int] = []
                last_offset, last_line = offset, line

                def flush() -> None:
                    nonlocal pending, pending_lines, offset, shown
                    if pending and not dry_run:
                        totals = client.send(pending, progress=progress)
                        fs.sent += totals.sent
                        fs.accepted += totals.accepted
                        fs.duplicates += totals.duplicates
                        fs.rejected += totals.rejected
                        for r in totals.rejections:
                            reason = f"{r.field}: {r.reason}"
                            fs.rejection_reasons[reason] += 1
                            if len(fs.rejections) < MAX_LISTED:
                                fs.rejections.append((pending_lines[r.index], reason))
                    if not dry_run and last_offset > offset:
                        state.save(source, identity, last_offset, last_line, fs.format)
                    bar.update(max(0, last_offset - shown))
                    bar.set_postfix(sent=fs.sent, refresh=False)
                    shown = max(shown, last_offset)
                    offset = last_offset
                    pending, pending_lines = [], []

                records = iter_records(source, kind, offset, line)
                for parsed in parse_records(records, fs.format, options):
                    fs.read += 1
                    if parsed.error:
                        fs.unparseable += 1
                        if len(fs.errors) < MAX_LISTED:
                            fs.errors.append((parsed.record.line_no, parsed.error))
                    elif not parsed.events:
                        fs.skipped += 1
                    fs.events += len(parsed.events)
                    pending.extend(parsed.events)
                    pending_lines.extend([parsed.record.line_no] * len(parsed.events))
                    last_offset, last_line = parsed.record.end_offset, parsed.record.line_no
                    if last_offset - shown >= 1 << 20:  # reading progress between acknowledged chunks
                        bar.update(last_offset - shown)
                        shown = last_offset
                    if len(pending) >= chunk_size:
                        flush()
                if kind in ("lines", "json-array"):
                    last_offset = max(last_offset, source.size)  # trailing blank lines
                flush()
                bar.close()
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.failed = "interrupted; run again to resume from the last acknowledged record"
    except Exception as exc:  # delivery failed for good (IngestError) or the file went away
        from ueba.client.ingest import IngestError

        if not isinstance(exc, (IngestError, OSError)):
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
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser(
        "ship",
        help="parse log files and stream their events to ingest",
        description="Parse log files (plain or zip) and stream their events to the ingest service, resumably.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS), help="log format (default: detect per file)")
    p.add_argument("--address", default=os.environ.get("UEBA_INGEST_ADDRESS", "127.0.0.1:50051"), help="ingest host:port")
    p.add_argument("--batch-size", type=int, default=1000, help="events per batch (default 1000)")
    p.add_argument("--year", type=int, default=None, help="year of syslog lines that have none (default: current, rolled back for future dates)")
    p.add_argument("--timezone", default="UTC", help="zone of timestamps without one: IANA name or +HH:MM (default UTC)")
    p.add_argument("--state-dir", type=Path, default=None, help="where resume state is kept (default: FILE.ueba-ship.json)")
    p.add_argument("--restart", action="store_true", help="ignore saved state and ship from the start")
    p.add_argument("--dry-run", action="store_true", help="parse and summarise without sending")
    p.add_argument("--token", default=os.environ.get("UEBA_TOKEN"), help="bearer token (agent role)")
    p.add_argument("--retries", type=int, default=10, help="reconnect attempts before giving up (default 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_channel_options(p, token=False)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.batch_size < 1:
        print("--batch-size: at least 1", file=sys.stderr)
        return 2
    try:
        tz = zone(args.timezone)
    except ValueError as exc:
        print(f"--timezone: {exc}", file=sys.stderr)
        return 2
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    options = ParseOptions(year=args.year, timezone=tz)
    show = not args.no_progress and sys.stderr.isatty()
    started = time.monotonic()
    if args.dry_run:
        summary = ship_files(args.files, None, fmt=args.format, options=options, batch_size=args.batch_size, dry_run=True)
    else:
        from ueba.client.ingest import IngestClient

        with IngestClient(args.address, batch_size=args.batch_size, token=args.token, max_attempts=args.retries,
                          channel=channel_config(args)) as client:
            summary = ship_files(
                args.files,
                client,
                fmt=args.format,
                options=options,
                batch_size=args.batch_size,
                state_dir=args.state_dir,
                restart=args.restart,
                show_progress=show,
            )
    print(format_summary(summary, args.dry_run))
    print(f"took {time.monotonic() - started:.1f}s", file=sys.stderr)
    if summary.interrupted:
        return 130
    if summary.failed:
        return 1
    if summary.total("unparseable") or summary.total("rejected"):
        return 3
    return 0
