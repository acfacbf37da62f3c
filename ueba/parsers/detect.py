"""Which format a log is in, from its first records."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ueba.parsers.syslog import ISO_HEADER, RFC3164, RFC5424

FORMATS = ("ecs", "winevent", "syslog", "cef", "m365", "entra")

ENTRA_COLUMNS = {"userprincipalname", "createddatetime", "createddatetime [utc]", "ipaddress", "appdisplayname", "resulttype"}


class DetectionError(ValueError):
    pass


def classify_object(obj: Mapping[str, Any]) -> str | None:
    """The format of one decoded JSON object, or None when nothing matches."""
    keys = {str(k).lower() for k in obj}
    if "winlog" in keys or ("eventid" in keys and ("channel" in keys or "sourcename" in keys)):
        return "winevent"
    if isinstance(obj.get("event_id"), Mapping) or ("system_time" in keys and "event_id" in keys):
        return "winevent"
    if "operation" in keys and "creationtime" in keys:
        return "m365"
    category = str(obj.get("category") or obj.get("Category") or "").lower()
    if category in ("signinlogs", "noninteractiveusersigninlogs") or ("createddatetime" in keys and "userprincipalname" in keys):
        return "entra"
    if "@timestamp" in keys or "ecs" in keys or "event" in keys or any("." in k for k in keys):
        return "ecs"
    return None


def detect_text(lines: list[str]) -> tuple[str, str]:
    """(format, record kind) from the first lines; kind is 'lines' or 'csv'."""
    sample = [line.lstrip("\ufeff").rstrip("\r\n") for line in lines if line.strip()]
    if not sample:
        raise DetectionError("empty file")
    if sample[0].lstrip().startswith("{"):
        votes: Counter[str] = Counter()
        for line in sample:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                kind = classify_object(obj)
                if kind:
                    votes[kind] += 1
        if votes:
            return votes.most_common(1)[0][0], "lines"
        raise DetectionError("JSON lines of no known shape (ECS, Windows events, M365 audit, Entra sign-ins)")
    if any("CEF:" in line[:200] for line in sample[:5]):
        return "cef", "lines"
    header = next(csv.reader(io.StringIO(sample[0])), [])
    if len(header) > 3 and len(ENTRA_COLUMNS & {h.strip().lower() for h in header}) >= 3:
        return "entra", "csv"
    if sum(1 for line in sample if RFC3164.match(line) or RFC5424.match(line) or ISO_HEADER.match(line)) * 2 >= len(sample):
        return "syslog", "lines"
    raise DetectionError("unknown format: not JSON lines, CEF, an Entra CSV export or syslog")


def kind_of(fmt: str, first_line: str) -> str:
    """Record kind for an explicitly named format: Entra exports may be CSV."""
    if fmt == "entra" and not first_line.lstrip("\ufeff").lstrip().startswith("{"):
        return "csv"
    return "lines"
