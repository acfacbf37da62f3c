"""Parsers for the logs SIEM agents and shippers write, shared by ingest's OTLP receiver and `ueba ship`.

Each parser turns one record (a text line, or a mapping decoded from JSON or
CSV) into zero or more `ueba.v1.common_pb2.Event`s or raises `ParseError`:

| format   | what                                                                 |
|----------|----------------------------------------------------------------------|
| ecs      | Elastic Common Schema JSON lines, nested or with dotted keys         |
| winevent | Windows Security events as JSON (NXLog, Winlogbeat, OTel Collector)  |
| syslog   | Linux authentication syslog: sshd, PAM, su, sudo, login              |
| cef      | ArcSight Common Event Format, bare or behind a syslog header         |
| m365     | Microsoft 365 Unified Audit Log records                              |
| entra    | Entra ID sign-in logs: Graph, Azure Monitor and Log Analytics shapes |

`ueba.parsers.files` reads whole files (zip, CSV, BOM, CRLF) and detects the format.
"""

from __future__ import annotations

from ueba.parsers.base import Event, ParseError, ParseOptions, Parser, zone

FORMATS = ("ecs", "winevent", "syslog", "cef", "m365", "entra")
# Formats whose records parse without reference to earlier ones, so they may be parsed in
# parallel; syslog's parser counts repeats of a line to give each its own event id.
INDEPENDENT_FORMATS = frozenset(FORMATS) - {"syslog"}


def parser_for(fmt: str, options: ParseOptions | None = None) -> Parser:
    """A new parser for one stream of records (parsers may keep per-stream state)."""
    from ueba.parsers.cef import CefParser
    from ueba.parsers.fields import EcsParser
    from ueba.parsers.microsoft import EntraSignInParser, UnifiedAuditLogParser
    from ueba.parsers.syslog import SyslogParser
    from ueba.parsers.winevent import WindowsEventParser

    classes = {
        "ecs": EcsParser,
        "winevent": WindowsEventParser,
        "syslog": SyslogParser,
        "cef": CefParser,
        "m365": UnifiedAuditLogParser,
        "entra": EntraSignInParser,
    }
    if fmt not in classes:
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return classes[fmt](options or ParseOptions())


__all__ = ["Event", "FORMATS", "INDEPENDENT_FORMATS", "ParseError", "ParseOptions", "Parser", "parser_for", "zone"]
