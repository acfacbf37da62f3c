"""Linux authentication syslog: sshd, PAM (pam_unix), su, sudo, login, klogind.

Lines are RFC 3164 (`Dec 10 06:55:46 host sshd[24200]: msg`, no year and no
zone: both come from ParseOptions), RFC 5424, or rsyslog's ISO-timestamp form.
`parse_message` handles the message alone, for records whose header an agent
already split (the OpenTelemetry Collector's syslog receiver).

One sign-in attempt can be logged several times: sshd writes `Failed password
for root from IP` while its PAM module, in the same process, writes
`pam_unix(sshd:auth): authentication failure; ... rhost=IP user=root` and sshd
first says `Invalid user X from IP` before the failed attempt for an unknown
account. Counting each would triple a brute force, so those echoes are
*corroborating* records: recognised, but only emitted with
ParseOptions(corroborating=True). PAM lines written under the old
`sshd(pam_unix)` tag are the only record of the attempt in logs of that era (sshd
logged elsewhere), so they are events.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ueba.parsers.base import (
    FAILURE,
    SUCCESS,
    Event,
    ParseError,
    ParseOptions,
    parse_iso_time,
    set_source,
    set_time,
    set_user,
    stable_id,
)
from ueba.v1 import common_pb2

MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}

RFC3164 = re.compile(
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)(?:\.\d+)?"
    r"(?: (?P<year>\d{4}))? (?P<host>\S+) ?(?P<rest>.*)$"
)
ISO_HEADER = re.compile(r"^(?:<(?P<pri>\d{1,3})>)?(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S*) (?P<host>\S+) ?(?P<rest>.*)$")
RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) (?P<rest>.*)$"
)
# `sshd[123]: msg`, `sshd(pam_unix)[123]: msg`, `kernel: msg`, `syslogd 1.4.1: restart.`
TAG = re.compile(r"^(?P<program>[^\s:\[]+(?:\([^)]*\))?)(?:\[(?P<pid>\d+)\])?: ?(?P<msg>.*)$")
LOOSE_TAG = re.compile(r"^(?P<program>[^:\[]{1,64}?)(?:\[(?P<pid>\d+)\])?: (?P<msg>.*)$")


@dataclass
class SyslogLine:
    time: datetime
    host: str
    program: str
    pid: str
    message: str


def _structured_data_end(rest: str) -> int:
    """Index where RFC 5424 STRUCTURED-DATA ends ('-' or [..][..] with escapes)."""
    if rest.startswith("-"):
        return 1
    i = 0
    while i < len(rest) and rest[i] == "[":
        i += 1
        while i < len(rest) and rest[i] != "]":
            i += 2 if rest[i] == "\\" else 1
        i += 1
    return i


def rfc3164_time(mon: str, day: str, clock: str, year: str | None, options: ParseOptions) -> datetime:
    month = MONTHS.get(mon.lower())
    if not month:
        raise ParseError(f"unknown month {mon!r}")
    hh, mm, ss = (int(x) for x in clock.split(":"))
    explicit = int(year) if year else options.year
    now = options.reference_now()
    y = explicit if explicit else now.astimezone(options.timezone).year
    try:
        when = datetime(y, month, int(day), hh, mm, ss, tzinfo=options.timezone)
    except ValueError as exc:
        raise ParseError(f"bad date: {exc}") from None
    if not explicit and when > now + timedelta(days=1):
        # A line from December read in January belongs to last year.
        when = when.replace(year=y - 1)
    return when


def read_line(line: str, options: ParseOptions) -> SyslogLine:
    text = line.rstrip("\r\n")
    m = RFC5424.match(text)
    if m:
        rest = m.group("rest")
        end = _structured_data_end(rest)
        message = rest[end:].lstrip(" ").lstrip("\ufeff")
        ts = m.group("ts")
        if ts == "-":
            raise ParseError("RFC 5424 line without a timestamp")
        return SyslogLine(
            time=parse_iso_time(ts, options.timezone),
            host=m.group("host") if m.group("host") != "-" else "",
            program=m.group("app") if m.group("app") != "-" else "",
            pid=m.group("procid") if m.group("procid") != "-" else "",
            message=message,
        )
    m = RFC3164.match(text)
    if m:
        when = rfc3164_time(m.group("mon"), m.group("day"), m.group("time"), m.group("year"), options)
    else:
        m = ISO_HEADER.match(text)
        if not m:
            raise ParseError("not a syslog line: no 'Mmm dd hh:mm:ss host' or ISO timestamp header")
        when = parse_iso_time(m.group("ts"), options.timezone)
    rest = m.group("rest")
    tag = TAG.match(rest) or LOOSE_TAG.match(rest)
    if tag:
        return SyslogLine(when, m.group("host"), tag.group("program"), tag.group("pid") or "", tag.group("msg"))
    return SyslogLine(when, m.group("host"), "", "", rest)


# -- messages -------------------------------------------------------------------

REPEATED = re.compile(r"^message repeated (?P<n>\d+) times: \[ ?(?P<msg>.*)\]$")
ACCEPTED = re.compile(r"^Accepted (?P<method>\S+) for (?P<user>.*?) from (?P<ip>\S+) port (?P<port>\d+)")
FAILED = re.compile(r"^Failed (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>.*?) from (?P<ip>\S+) port (?P<port>\d+)")
INVALID_USER = re.compile(r"^Invalid user (?P<user>.*?) from (?P<ip>\S+?)(?: port (?P<port>\d+))?$")
NOT_ALLOWED = re.compile(r"^User (?P<user>\S+) from (?P<ip>\S+) not allowed because (?P<why>.*)$")
DISCONNECTED_USER = re.compile(r"^Disconnected from user (?P<user>\S+) (?P<ip>\S+) port (?P<port>\d+)")
PAM_PREFIX = re.compile(r"^pam_unix\((?P<service>[^:)]+):(?P<stage>[^)]+)\): ?(?P<msg>.*)$")
PAM_AUTH_FAILURE = re.compile(r"^authentication failure;(?P<kv>.*)$")
PAM_MORE_FAILURES = re.compile(r"^PAM (?P<n>\d+) more authentication failures?;(?P<kv>.*)$")
PAM_SESSION_OPENED = re.compile(r"^session opened for user (?P<user>\S+)(?: by (?P<by>.*))?$")
PAM_SESSION_CLOSED = re.compile(r"^session closed for user (?P<user>\S+)")
SUDO_COMMAND = re.compile(r"^\s*(?P<user>\S+) : (?:(?P<failures>\d+) incorrect password attempts? ; )?TTY=.*?USER=(?P<target>\S+) ; COMMAND=(?P<command>.*)$")
KLOGIND_FAILED = re.compile(r"^Authentication failed from (?P<ip>\S+) \((?P<host>[^)]*)\): ?(?P<why>.*)$")
KV = re.compile(r"(\w+)=(\S*)")

PRIVILEGE_SERVICES = ("su", "su-l", "sudo", "sudo-i", "doas", "pkexec")

SSHD_METHOD_REASONS = {"password": "bad_password", "publickey": "bad_key", "keyboard-interactive": "bad_password", "none": "no_credentials"}


@dataclass
class _Attempt:
    kind: int
    outcome: int
    user: str
    source: str = ""  # rhost or the address logged: an address or a host name
    port: str = ""
    reason: str = ""
    method: str = ""
    corroborating: bool = False
    attributes: Mapping[str, str] | None = None
    source_host: str = ""  # a host name logged beside an address


def _pam_kv(text: str) -> dict[str, str]:
    return {k: v for k, v in KV.findall(text)}


def _service_of(program: str) -> tuple[str, bool]:
    """('sshd', True) for the legacy 'sshd(pam_unix)' tag, ('sshd', False) for 'sshd'."""
    if program.endswith("(pam_unix)"):
        return program[: -len("(pam_unix)")], True
    return program, False


def _pam_attempt(service: str, stage: str, msg: str, embedded: bool) -> list[_Attempt] | None:
    """A PAM message; embedded means written by the service's own process next to its own lines."""
    privileged = service in PRIVILEGE_SERVICES
    # sshd writes its own Accepted/Failed lines for every attempt its PAM module reports.
    echo = embedded and service == "sshd"
    m = PAM_AUTH_FAILURE.match(msg)
    if m:
        kv = _pam_kv(m.group("kv"))
        user = kv.get("user", "")
        kind = common_pb2.EVENT_TYPE_PRIVILEGE_USE if privileged else common_pb2.EVENT_TYPE_LOGON
        reason = "bad_password" if kv.get("user") else "unknown_user"
        attrs = {"ruser": kv["ruser"]} if kv.get("ruser") else None
        return [_Attempt(kind, FAILURE, user, kv.get("rhost", ""), reason=reason, corroborating=echo, attributes=attrs)]
    m = PAM_MORE_FAILURES.match(msg)
    if m:
        kv = _pam_kv(m.group("kv"))
        user = kv.get("user", "")
        kind = common_pb2.EVENT_TYPE_PRIVILEGE_USE if privileged else common_pb2.EVENT_TYPE_LOGON
        n = int(m.group("n"))
        return [_Attempt(kind, FAILURE, user, kv.get("rhost", ""), reason="bad_password", corroborating=echo)] * n
    m = PAM_SESSION_OPENED.match(msg)
    if m:
        by = (m.group("by") or "").strip()
        attrs = {"by": by} if by else None
        if privileged:
            return [_Attempt(common_pb2.EVENT_TYPE_PRIVILEGE_USE, SUCCESS, m.group("user"), attributes=attrs)]
        return [_Attempt(common_pb2.EVENT_TYPE_LOGON, SUCCESS, m.group("user"), corroborating=echo, attributes=attrs)]
    m = PAM_SESSION_CLOSED.match(msg)
    if m:
        if privileged:
            return []  # the end of an su session is not an account's action
        return [_Attempt(common_pb2.EVENT_TYPE_LOGOFF, SUCCESS, m.group("user"))]
    if msg.startswith(("check pass;", "account ", "password changed")):
        if msg.startswith("password changed for "):
            return [_Attempt(common_pb2.EVENT_TYPE_PASSWORD_CHANGE, SUCCESS, msg.split()[-1])]
        return []
    return None


def _sshd_attempt(msg: str) -> list[_Attempt] | None:
    m = ACCEPTED.match(msg)
    if m:
        return [_Attempt(common_pb2.EVENT_TYPE_LOGON, SUCCESS, m.group("user"), m.group("ip"), m.group("port"), method=m.group("method"))]
    m = FAILED.match(msg)
    if m:
        method = m.group("method")
        reason = "unknown_user" if m.group("invalid") else SSHD_METHOD_REASONS.get(method, f"failed_{method}")
        return [
            _Attempt(
                common_pb2.EVENT_TYPE_LOGON, FAILURE, m.group("user").strip(), m.group("ip"), m.group("port"),
                reason=reason, method=method, attributes={"invalid_user": "true"} if m.group("invalid") else None,
            )
        ]
    m = INVALID_USER.match(msg)
    if m:
        return [
            _Attempt(common_pb2.EVENT_TYPE_LOGON, FAILURE, m.group("user").strip(), m.group("ip"), m.group("port") or "",
                     reason="unknown_user", corroborating=True, attributes={"invalid_user": "true"})
        ]
    m = NOT_ALLOWED.match(msg)
    if m:
        return [_Attempt(common_pb2.EVENT_TYPE_LOGON, FAILURE, m.group("user"), m.group("ip"), reason="not_allowed", corroborating=True)]
    m = DISCONNECTED_USER.match(msg)
    if m:
        return [_Attempt(common_pb2.EVENT_TYPE_LOGOFF, SUCCESS, m.group("user"), m.group("ip"), m.group("port"))]
    return None


def _attempts(program: str, message: str) -> list[_Attempt]:
    service, legacy_pam = _service_of(program)
    base = service.rsplit("/", 1)[-1]
    if legacy_pam:
        found = _pam_attempt(base, "", message, embedded=False)
        return found or []
    pam = PAM_PREFIX.match(message)
    if pam:
        found = _pam_attempt(pam.group("service"), pam.group("stage"), pam.group("msg"), embedded=pam.group("service") == base)
        return found or []
    if base == "sshd":
        found = _sshd_attempt(message)
        if found is not None:
            return found
        m = PAM_MORE_FAILURES.match(message)
        if m:
            return _pam_attempt("sshd", "auth", message, embedded=True) or []
        return []
    if base == "sudo":
        m = SUDO_COMMAND.match(message)
        if m:
            failed = bool(m.group("failures"))
            attrs = {"target_user": m.group("target"), "command": m.group("command")[:512]}
            return [_Attempt(common_pb2.EVENT_TYPE_PRIVILEGE_USE, FAILURE if failed else SUCCESS, m.group("user"),
                             reason="bad_password" if failed else "", attributes=attrs)]
        return []
    if base == "klogind":
        m = KLOGIND_FAILED.match(message)
        if m:
            name = m.group("host").strip()
            return [_Attempt(common_pb2.EVENT_TYPE_LOGON, FAILURE, "", m.group("ip"), reason=m.group("why").strip().lower() or "failed",
                             source_host=name if name != m.group("ip") else "")]
        if message.strip() == "Kerberos authentication failed":
            # Written next to "Authentication failed from IP" for the same attempt.
            return [_Attempt(common_pb2.EVENT_TYPE_LOGON, FAILURE, "", reason="kerberos", corroborating=True)]
    return []


def parse_message(
    host: str,
    program: str,
    pid: str,
    message: str,
    when: datetime,
    id_base: str,
    options: ParseOptions,
) -> list[Event]:
    """Events in one syslog message whose header is already split."""
    repeat = 1
    m = REPEATED.match(message)
    if m:
        repeat, message = int(m.group("n")), m.group("msg")
    found = _attempts(program, message) * repeat
    events: list[Event] = []
    service, _ = _service_of(program)
    base = service.rsplit("/", 1)[-1]
    for i, attempt in enumerate(found):
        if attempt.corroborating and not options.corroborating:
            continue
        event = Event()
        set_time(event, when)
        set_user(event, attempt.user)
        event.type = attempt.kind
        event.outcome = attempt.outcome
        if attempt.source:
            set_source(event, attempt.source)
        elif not attempt.user and attempt.outcome == FAILURE and host:
            # A failure at the machine itself (gdm's console, `rhost=` empty) that names no
            # account: its source is the machine, as Windows names the workstation.
            event.source_host = host.lower()
        if attempt.source_host and not event.source_host:
            event.source_host = attempt.source_host.lower()
        if host:
            event.destination_host = host.lower()
        event.application = base
        event.producer = base or "syslog"
        event.action = message[:120]
        if attempt.reason:
            event.failure_reason = attempt.reason
        if attempt.method:
            event.attributes["auth_method"] = attempt.method
        if attempt.port:
            event.attributes["source_port"] = attempt.port
        if pid:
            event.attributes["pid"] = pid
        if attempt.corroborating:
            event.attributes["corroborating"] = "true"
        for key, value in (attempt.attributes or {}).items():
            event.attributes[key] = value
        event.event_id = f"{id_base}:{i}" if len(found) > 1 else id_base
        events.append(event)
    return events


class SyslogParser:
    name = "syslog"

    def __init__(self, options: ParseOptions | None = None):
        self.options = options or ParseOptions()
        # Identical lines (same second, process and text) are separate events;
        # a counter of recent ones keeps their ids apart.
        self._recent: OrderedDict[str, int] = OrderedDict()

    def _occurrence(self, text: str) -> int:
        seen = self._recent.get(text, 0)
        self._recent[text] = seen + 1
        self._recent.move_to_end(text)
        if len(self._recent) > 4096:
            self._recent.popitem(last=False)
        return seen

    def parse(self, record: str | Mapping[str, Any]) -> list[Event]:
        if not isinstance(record, str):
            raise ParseError("syslog records are text lines")
        text = record.rstrip("\r\n")
        line = read_line(text, self.options)
        id_base = stable_id("syslog", line.host.lower(), line.time.isoformat(), text, self._occurrence(text))
        return parse_message(line.host, line.program, line.pid, line.message, line.time, id_base, self.options)
