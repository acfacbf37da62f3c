"""ArcSight Common Event Format: `CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|k=v ...`.

Often behind a syslog header, which gives the time and host when the extension
has no `rt`. Header fields escape `|` and `\\`; extension values escape `=`,
`\\`, and carry `\\n` / `\\r`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ueba.parsers.base import (
    Event,
    ParseError,
    ParseOptions,
    first,
    names_its_source,
    parse_epoch,
    parse_iso_time,
    set_destination,
    set_source,
    set_time,
    set_user,
    stable_id,
    zone,
)
from ueba.parsers.fields import outcome_of, type_from_words
from ueba.parsers.syslog import RFC3164, ISO_HEADER, rfc3164_time

EXT_KEY = re.compile(r"(?:^|(?<=\s))([A-Za-z0-9_.\[\]-]+)=")
CEF_TIME_FORMATS = ("%b %d %Y %H:%M:%S.%f", "%b %d %Y %H:%M:%S", "%b %d %H:%M:%S.%f", "%b %d %H:%M:%S")


def split_header(text: str) -> tuple[list[str], str]:
    """The seven header fields and the extension, honouring `\\|` escapes."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text) and len(fields) < 7:
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "|\\":
            current.append(text[i + 1])
            i += 2
            continue
        if ch == "|":
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if len(fields) < 7:
        raise ParseError(f"CEF header has {len(fields) + (1 if current else 0)} of 8 fields")
    return fields, text[i:]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value)


def parse_extension(text: str) -> dict[str, str]:
    """`k=v k2=v with spaces` -> dict; a key starts after whitespace, '\\=' is not a separator."""
    # Find unescaped '=' preceded by a key token.
    positions = []
    for m in EXT_KEY.finditer(text):
        start = m.start(1)
        if start > 0 and text[start - 1] == "\\":
            continue
        # '=' escaped as '\=' never matches: EXT_KEY has no backslash in keys.
        positions.append((m.group(1), m.start(1), m.end()))
    values: dict[str, str] = {}
    for idx, (key, _start, value_start) in enumerate(positions):
        value_end = positions[idx + 1][1] if idx + 1 < len(positions) else len(text)
        values[key] = _unescape(text[value_start:value_end].rstrip())
    return values


def _cef_time(value: str, options: ParseOptions) -> datetime:
    text = value.strip()
    if text.isdigit():
        return parse_epoch(text)
    for fmt in CEF_TIME_FORMATS:
        try:
            when = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if "%Y" not in fmt:
            when = when.replace(year=options.year or options.reference_now().year)
        return when.replace(tzinfo=options.timezone)
    # 'MMM dd yyyy HH:mm:ss zzz' and ISO forms
    parts = text.rsplit(" ", 1)
    if len(parts) == 2:
        try:
            base = datetime.strptime(parts[0], "%b %d %Y %H:%M:%S")
            return base.replace(tzinfo=zone(parts[1]))
        except ValueError:
            pass
    return parse_iso_time(text, options.timezone)


def _custom_string(ext: Mapping[str, str], labels: tuple[str, ...]) -> str:
    """The value of csN whose csNLabel is one of labels."""
    for n in range(1, 7):
        if ext.get(f"cs{n}Label", "").strip().lower() in labels and ext.get(f"cs{n}"):
            return ext[f"cs{n}"]
    return ""


class CefParser:
    name = "cef"

    def __init__(self, options: ParseOptions | None = None):
        self.options = options or ParseOptions()

    def parse(self, record: str | Mapping[str, Any], default_time: datetime | None = None) -> list[Event]:
        """default_time: the envelope's time (an OTLP record's) for lines without rt or header."""
        if not isinstance(record, str):
            raise ParseError("CEF records are text lines")
        text = record.rstrip("\r\n")
        at = text.find("CEF:")
        if at < 0:
            raise ParseError("no 'CEF:' in the line")
        prefix, body = text[:at].strip(), text[at + 4 :]
        header, ext_text = split_header(body)
        _version, vendor, product, _dev_version, signature, name, severity = header
        ext = parse_extension(ext_text)

        event = Event()
        header_time = None
        header_host = ""
        if prefix:
            m = RFC3164.match(prefix + " x") or ISO_HEADER.match(prefix + " x")
            if m:
                header_host = m.group("host")
                try:
                    if "mon" in m.groupdict():
                        header_time = rfc3164_time(m.group("mon"), m.group("day"), m.group("time"), m.group("year"), self.options)
                    else:
                        header_time = parse_iso_time(m.group("ts"), self.options.timezone)
                except ParseError:
                    header_time = None
        raw_time = first(ext, "rt", "end", "start", "deviceReceiptTime")
        if raw_time:
            when = _cef_time(raw_time, self.options)
        elif header_time:
            when = header_time
        elif default_time:
            when = default_time
        else:
            raise ParseError("no time: no rt/start/end and no syslog header")
        set_time(event, when)

        user = first(ext, "duser", "suser", "duid", "suid")
        set_user(event, user or "")
        if ext.get("suser") and ext.get("duser") and ext["suser"] != ext["duser"]:
            event.attributes["source_user"] = ext["suser"]

        kind = type_from_words(ext.get("cat"), ext.get("categoryBehavior"), ext.get("act"), name, signature)
        if not kind:
            raise ParseError(f"cannot tell what happened from name {name!r} / act / cat")
        event.type = kind
        event.outcome = outcome_of(first(ext, "outcome", "categoryOutcome", "eventOutcome"), name, ext.get("act"))
        for src in (first(ext, "src", "c6a2"), first(ext, "shost")):
            if src:
                set_source(event, src)
        if not event.user and not names_its_source(event):
            raise ParseError("no user (duser or suser); only a failure with src or shost may name none")
        for dst in (first(ext, "dst", "c6a3"), first(ext, "dhost") or header_host):
            if dst:
                set_destination(event, dst)
        app = first(ext, "app", "destinationServiceName", "dproc")
        if app:
            event.application = app
        if ext.get("requestClientApplication"):
            event.user_agent = ext["requestClientApplication"]
        obj = first(ext, "filePath", "fname", "request", "fileId")
        if obj:
            event.object = obj[:1024]
        size = first(ext, "fsize", "in", "out")
        if size and str(size).isdigit():
            event.bytes = int(size)
        reason = ext.get("reason") or _custom_string(ext, ("reason", "failure reason", "failurereason"))
        if reason:
            event.failure_reason = reason[:256]
        event.action = (ext.get("act") or name)[:256]
        event.producer = f"{vendor}/{product}".lower()
        event.attributes["signature_id"] = signature
        event.attributes["severity"] = severity
        external = ext.get("externalId")
        event.event_id = stable_id("cef", vendor, product, external) if external else stable_id("cef", text)
        return [event]
