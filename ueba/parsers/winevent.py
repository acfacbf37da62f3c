"""Windows Security events as JSON: NXLog, Winlogbeat and the OpenTelemetry Collector.

Three agents write the same event three ways:
- NXLog (im_msvistalog, to_json): flat, `EventID`, `Hostname`, `EventTime` in the
  agent's local time, the event data fields at top level;
- Winlogbeat: `winlog.event_id`, `winlog.computer_name`, `winlog.event_data`, `@timestamp` in UTC;
- the Collector's windowseventlog receiver: `event_id.id`, `computer`, `system_time`,
  `event_data` as a map or as a list under `event_data.data`.
Each is read into one `WinRecord`; the mapping of event ids to Events is shared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ueba.parsers.base import (
    FAILURE,
    SUCCESS,
    Event,
    ParseError,
    ParseOptions,
    canonical_user,
    first,
    load_json_object,
    parse_iso_time,
    record_hash_id,
    names_its_source,
    set_source,
    set_time,
    set_user,
    stable_id,
)
from ueba.v1 import common_pb2

LOGON_TYPES = {
    0: "system",
    2: "interactive",
    3: "network",
    4: "batch",
    5: "service",
    7: "unlock",
    8: "network_cleartext",
    9: "new_credentials",
    10: "remote_interactive",
    11: "cached_interactive",
    12: "cached_remote_interactive",
    13: "cached_unlock",
}
# Winlogbeat's words (`winlog.logon.type`: "RemoteInteractive", "Network", ...) to the numbers.
_LOGON_TYPE_NUMBERS = {name.replace("_", ""): number for number, name in LOGON_TYPES.items()}
_LOGON_TYPE_NUMBERS["proxy"] = 6

# NTSTATUS codes of 4625 / 4776 (Status, SubStatus) as failure reasons.
NTSTATUS_REASONS = {
    0xC0000064: "unknown_user",
    0xC000006A: "bad_password",
    0xC000006C: "password_policy",
    0xC000006D: "bad_credentials",
    0xC000006E: "account_restriction",
    0xC000006F: "outside_logon_hours",
    0xC0000070: "workstation_restriction",
    0xC0000071: "password_expired",
    0xC0000072: "account_disabled",
    0xC0000133: "clock_skew",
    0xC000015B: "logon_type_not_granted",
    0xC000018C: "trust_failure",
    0xC0000192: "netlogon_not_started",
    0xC0000193: "account_expired",
    0xC0000224: "password_must_change",
    0xC0000225: "windows_bug",
    0xC0000234: "account_locked",
    0xC00002EE: "failure_after_logon",
    0xC0000371: "local_account_store",
    0xC0000413: "authentication_firewall",
    0xC000005E: "no_logon_servers",
}

# Kerberos result codes of 4768 / 4769 / 4771 (RFC 4120 error codes).
KERBEROS_REASONS = {
    0x6: "unknown_user",
    0x7: "unknown_service",
    0xC: "policy",
    0x12: "account_disabled_or_locked",
    0x17: "password_expired",
    0x18: "bad_password",
    0x1F: "integrity_check",
    0x20: "ticket_expired",
    0x25: "clock_skew",
    0x1B: "must_use_user2user",
    0xE: "unsupported_encryption",
}

# Ticket encryption types of 4768 / 4769 (RFC 3961, RFC 4757): RC4 tickets are what
# Kerberoasting asks for.
KERBEROS_ENCRYPTION = {
    0x1: "des-cbc-crc",
    0x3: "des-cbc-md5",
    0x11: "aes128-cts-hmac-sha1-96",
    0x12: "aes256-cts-hmac-sha1-96",
    0x17: "rc4-hmac",
    0x18: "rc4-hmac-exp",
}

HANDLED = (4624, 4625, 4634, 4647, 4648, 4672, 4688, 4768, 4769, 4771, 4776, 5140, 5145)
# The Keywords bit of an audit failure (event XML, the Collector's raw form).
AUDIT_FAILURE_BIT = 0x10000000000000


@dataclass
class WinRecord:
    event_id: int
    channel: str
    computer: str
    record_id: str
    time: datetime
    data: Mapping[str, Any]
    shape: str
    audit_failure: bool = False


def _int(value: Any) -> int | None:
    if value is None or value == "" or value == "-":
        return None
    try:
        text = str(value).strip()
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def logon_type_number(value: Any) -> int | None:
    """A logon type written as a number (`10`, `"3"`) or as a word (`RemoteInteractive`, `network`)."""
    number = _int(value)
    if number is not None:
        return number
    word = re.sub(r"[\s_\-]", "", str(value or "")).lower()
    return _LOGON_TYPE_NUMBERS.get(word)


def set_logon_type(event: Event, value: Any) -> None:
    number = logon_type_number(value)
    if number is not None:
        event.logon_type = number
        event.attributes["logon.type"] = LOGON_TYPES.get(number, str(number))


def _audit_failure(keywords: Any) -> bool:
    """Keywords as the agents write them: a list of names, one name, or the bit mask."""
    if isinstance(keywords, (list, tuple)):
        return any(_audit_failure(k) for k in keywords)
    if isinstance(keywords, str) and "failure" in keywords.lower():
        return True
    mask = _int(keywords)
    return mask is not None and bool(mask & AUDIT_FAILURE_BIT)


def _nxlog_time(record: Mapping[str, Any], options: ParseOptions) -> datetime:
    """NXLog writes EventTime in the agent's local time without a zone.

    When Logstash added a UTC @timestamp for the receive time, its distance to
    EventReceivedTime (the same moment in local time) gives the agent's offset;
    otherwise the configured zone is used.
    """
    local = record.get("EventTime")
    if not local:
        stamp = first(record, "@timestamp", "EventReceivedTime")
        if stamp is None:
            raise ParseError("no time (EventTime)")
        return parse_iso_time(str(stamp), options.timezone)
    naive = datetime.fromisoformat(str(local).replace(" ", "T"))
    if naive.tzinfo is not None:
        return naive
    received, stamp = record.get("EventReceivedTime"), record.get("@timestamp")
    if received and stamp:
        try:
            utc = parse_iso_time(str(stamp))
            local_received = datetime.fromisoformat(str(received).replace(" ", "T"))
            offset = local_received - utc.replace(tzinfo=None)
            quarter = timedelta(minutes=15)
            offset = round(offset / quarter) * quarter
            if abs(offset) <= timedelta(hours=14):
                return naive.replace(tzinfo=timezone(offset))
        except ValueError:
            pass
    return naive.replace(tzinfo=options.timezone)


def _event_data(value: Any) -> dict[str, Any]:
    """The Collector's event_data: a plain map, or {'data': [{'Name': value}, ...]}."""
    if not isinstance(value, Mapping):
        return {}
    items = value.get("data")
    if isinstance(items, list):
        data: dict[str, Any] = {}
        for item in items:
            if isinstance(item, Mapping):
                if "name" in item and "value" in item:
                    data[str(item["name"])] = item["value"]
                else:
                    data.update(item)
        return data
    return dict(value)


def read_record(record: Mapping[str, Any], options: ParseOptions) -> WinRecord:
    winlog = record.get("winlog")
    if isinstance(winlog, Mapping):  # Winlogbeat
        event_id = _int(first(winlog, "event_id") or (record.get("event") or {}).get("code"))
        stamp = record.get("@timestamp")
        if stamp is None:
            raise ParseError("no time (@timestamp)")
        data = dict(winlog.get("event_data") or {})
        logon = winlog.get("logon")
        if "LogonType" not in data and isinstance(logon, Mapping) and logon.get("type"):
            data["LogonType"] = logon["type"]  # the word Winlogbeat writes, "Network", ...
        outcome = str((record.get("event") or {}).get("outcome") or "")
        return WinRecord(
            event_id=event_id or 0,
            channel=str(winlog.get("channel") or ""),
            computer=str(winlog.get("computer_name") or (record.get("host") or {}).get("name") or ""),
            record_id=str(winlog.get("record_id") or ""),
            time=parse_iso_time(str(stamp), options.timezone),
            data=data,
            shape="winlogbeat",
            audit_failure=outcome == "failure" or _audit_failure(winlog.get("keywords")),
        )
    raw_id = record.get("event_id")
    if isinstance(raw_id, Mapping) or "system_time" in record:  # OpenTelemetry Collector
        event_id = _int(raw_id.get("id") if isinstance(raw_id, Mapping) else raw_id)
        stamp = record.get("system_time")
        if not stamp:
            raise ParseError("no time (system_time)")
        return WinRecord(
            event_id=event_id or 0,
            channel=str(record.get("channel") or ""),
            computer=str(record.get("computer") or ""),
            record_id=str(record.get("record_id") or ""),
            time=parse_iso_time(str(stamp), options.timezone),
            data=_event_data(record.get("event_data")),
            shape="otel",
            audit_failure=_audit_failure(record.get("keywords")),
        )
    if "EventID" in record:  # NXLog and other flat shapes
        return WinRecord(
            event_id=_int(record.get("EventID")) or 0,
            channel=str(record.get("Channel") or ""),
            computer=str(first(record, "Hostname", "Computer", "computer_name") or ""),
            record_id=str(first(record, "RecordNumber", "EventRecordID") or ""),
            time=_nxlog_time(record, options),
            data=record,
            shape="nxlog",
            audit_failure=str(record.get("EventType") or "").upper() == "AUDIT_FAILURE",
        )
    raise ParseError("not a Windows event: no EventID, winlog.event_id or event_id")


def xml_record(text: str) -> dict[str, Any]:
    """Event XML (`<Event xmlns=...><System>...</System><EventData><Data Name=..>`) in the Collector's map shape."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ParseError(f"not event XML: {exc}") from None

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    system = next((c for c in root if local(c.tag) == "System"), None)
    if local(root.tag) != "Event" or system is None:
        raise ParseError("not event XML: no Event/System")
    fields = {local(c.tag): c for c in system}
    time_created = fields.get("TimeCreated")
    data: dict[str, Any] = {}
    for section in root:
        if local(section.tag) == "EventData":
            for item in section:
                if item.get("Name"):
                    data[item.get("Name")] = item.text or ""
    return {
        "event_id": {"id": (fields["EventID"].text or "0").strip() if "EventID" in fields else "0"},
        "channel": fields["Channel"].text if "Channel" in fields else "",
        "computer": fields["Computer"].text if "Computer" in fields else "",
        "record_id": fields["EventRecordID"].text if "EventRecordID" in fields else "",
        "system_time": time_created.get("SystemTime") if time_created is not None else "",
        "keywords": fields["Keywords"].text if "Keywords" in fields else "",
        "event_data": data,
    }


def _account(data: Mapping[str, Any], name_key: str) -> str:
    name = str(data.get(name_key) or "").strip()
    if not name or name == "-":
        return ""
    return name


def _failure_reason(status: Any, sub_status: Any, table: Mapping[int, str]) -> str:
    code, sub = _int(status), _int(sub_status)
    # 0xC000006D only says "bad user name or password"; the sub-status says which.
    if code == 0xC000006D and sub:
        code = sub
    if code is None:
        return ""
    return table.get(code, f"status_{code:#x}")


def _set_domain(event: Event, d: Mapping[str, Any], key: str) -> None:
    domain = _account(d, key)
    if domain:
        event.attributes["domain"] = domain


def _set_process(event: Event, path: Any, prefix: str = "process") -> None:
    """The executable's path and its file name (ECS `process.executable`, `process.name`)."""
    text = str(path or "").strip()
    if text and text != "-":
        event.attributes[f"{prefix}.executable"] = text[:1024]
        event.attributes[f"{prefix}.name"] = text.replace("/", "\\").rsplit("\\", 1)[-1]


def _set_actor(event: Event, d: Mapping[str, Any]) -> None:
    """Who acted (the subject) and through which process, beside the account acted on."""
    actor = _account(d, "SubjectUserName")
    if actor:
        event.attributes["actor.user"] = canonical_user(actor)
        domain = _account(d, "SubjectDomainName")
        if domain:
            event.attributes["actor.domain"] = domain
    _set_process(event, d.get("ProcessName"))


class WindowsEventParser:
    name = "winevent"

    def __init__(self, options: ParseOptions | None = None):
        self.options = options or ParseOptions()

    def parse(self, record: str | Mapping[str, Any]) -> list[Event]:
        from_xml = isinstance(record, str) and record.lstrip().startswith("<")
        obj = xml_record(record.strip()) if from_xml else load_json_object(record)
        win = read_record(obj, self.options)
        if from_xml:
            win.shape = "xml"
        if win.event_id not in HANDLED:
            return []
        if win.channel and win.channel != "Security":
            return []
        event = Event()
        event.producer = "winevent"
        event.action = str(win.event_id)
        # The audit result, for the events whose data does not say it otherwise.
        event.outcome = FAILURE if win.audit_failure else SUCCESS
        set_time(event, win.time)
        d = win.data
        computer = win.computer.lower()
        if computer:
            event.destination_host = computer
        handler = getattr(self, f"_e{win.event_id}")
        if handler(event, d, computer) is False:
            return []
        if not event.user and not names_its_source(event):
            raise ParseError(f"event {win.event_id} names no account")
        if win.record_id and win.computer:
            event.event_id = stable_id("winevent", computer, win.channel or "Security", win.record_id)
        else:
            event.event_id = record_hash_id("winevent", obj)
        event.attributes["shape"] = win.shape
        return [event]

    # -- one method per event id -------------------------------------------------

    def _logon_fields(self, event: Event, d: Mapping[str, Any]) -> None:
        set_user(event, _account(d, "TargetUserName"))
        _set_domain(event, d, "TargetDomainName")
        _set_actor(event, d)
        set_source(event, d.get("IpAddress"))
        workstation = _account(d, "WorkstationName")
        if workstation:
            event.source_host = workstation.lower()
        set_logon_type(event, d.get("LogonType"))
        package = _account(d, "AuthenticationPackageName")
        if package:
            event.attributes["auth_package"] = package

    def _e4624(self, event, d, computer):
        event.type, event.outcome = common_pb2.EVENT_TYPE_LOGON, SUCCESS
        self._logon_fields(event, d)

    def _e4625(self, event, d, computer):
        event.type, event.outcome = common_pb2.EVENT_TYPE_LOGON, FAILURE
        self._logon_fields(event, d)
        event.failure_reason = _failure_reason(d.get("Status"), d.get("SubStatus"), NTSTATUS_REASONS)
        for key in ("Status", "SubStatus"):
            if d.get(key):
                event.attributes[key.lower()] = str(d[key]).lower()

    def _e4634(self, event, d, computer):
        event.type, event.outcome = common_pb2.EVENT_TYPE_LOGOFF, SUCCESS
        set_user(event, _account(d, "TargetUserName"))
        set_logon_type(event, d.get("LogonType"))

    def _e4647(self, event, d, computer):
        event.type, event.outcome = common_pb2.EVENT_TYPE_LOGOFF, SUCCESS
        set_user(event, _account(d, "TargetUserName"))
        event.attributes["user_initiated"] = "true"

    def _e4648(self, event, d, computer):
        # Explicit credentials: the subject used the target account's credentials to
        # reach TargetServerName; the event is about the credentials' owner reaching a host.
        event.type, event.outcome = common_pb2.EVENT_TYPE_HOST_ACCESS, SUCCESS
        set_user(event, _account(d, "TargetUserName"))
        _set_domain(event, d, "TargetDomainName")
        _set_actor(event, d)
        event.attributes["explicit_credentials"] = "true"
        server = str(d.get("TargetServerName") or "").strip()
        event.source_host = computer
        event.destination_host = ""
        if server and server not in ("-", "localhost"):
            event.destination_host = server.lower()
        else:
            event.destination_host = computer
        set_source(event, d.get("IpAddress"))
        if event.source_ip:
            event.source_host = computer

    def _e4672(self, event, d, computer):
        event.type, event.outcome = common_pb2.EVENT_TYPE_PRIVILEGE_USE, SUCCESS
        set_user(event, _account(d, "SubjectUserName"))
        privileges = " ".join(str(d.get("PrivilegeList") or "").split())
        if privileges:
            event.object = privileges[:1024]

    def _e4688(self, event, d, computer):
        # The new process runs as the target account when one is named (a remote
        # session's wsmprovhost.exe started by the machine for pgustavo), else as its creator.
        event.type, event.outcome = common_pb2.EVENT_TYPE_PROCESS_START, SUCCESS
        target = _account(d, "TargetUserName")
        if target:
            set_user(event, target)
            _set_domain(event, d, "TargetDomainName")
            _set_actor(event, d)
        else:
            set_user(event, _account(d, "SubjectUserName"))
            _set_domain(event, d, "SubjectDomainName")
        path = _account(d, "NewProcessName")
        _set_process(event, path)
        _set_process(event, d.get("ParentProcessName"), prefix="process.parent")
        command = str(d.get("CommandLine") or "").strip()
        if command:
            event.attributes["process.command_line"] = command[:1024]
        if path:
            event.object = path[:1024]

    def _kerberos(self, event, d, computer):
        set_user(event, _account(d, "TargetUserName"))
        set_source(event, d.get("IpAddress"))
        service = _account(d, "ServiceName")
        if service:
            event.attributes["kerberos.service"] = service
        encryption = _int(d.get("TicketEncryptionType"))
        if encryption is not None and encryption != 0xFFFFFFFF:  # all ones: no ticket was issued
            event.attributes["kerberos.encryption"] = KERBEROS_ENCRYPTION.get(encryption, f"{encryption:#x}")
        status = _int(d.get("Status"))
        if status is None or status == 0:
            event.outcome = SUCCESS
        else:
            event.outcome = FAILURE
            event.failure_reason = KERBEROS_REASONS.get(status, f"kerberos_{status:#x}")
            event.attributes["kerberos.failure_code"] = f"{status:#x}"
        event.attributes["kerberos.kdc"] = computer
        event.attributes["auth_package"] = "Kerberos"
        event.application = "kerberos"

    def _e4768(self, event, d, computer):
        event.type = common_pb2.EVENT_TYPE_LOGON
        self._kerberos(event, d, computer)

    def _e4769(self, event, d, computer):
        # A service ticket names the service asked for; a machine account as the
        # service means the host itself.
        event.type = common_pb2.EVENT_TYPE_SERVICE_TICKET
        self._kerberos(event, d, computer)
        service = _account(d, "ServiceName")
        if service:
            event.object = service
        if service.endswith("$"):
            event.destination_host = service[:-1].lower()

    def _e4771(self, event, d, computer):
        event.type = common_pb2.EVENT_TYPE_LOGON
        self._kerberos(event, d, computer)
        if event.outcome != FAILURE:
            event.outcome = FAILURE  # 4771 is only written for failures

    def _e4776(self, event, d, computer):
        event.type = common_pb2.EVENT_TYPE_LOGON
        set_user(event, _account(d, "TargetUserName"))
        workstation = str(first(d, "Workstation") or "").strip()
        if workstation:
            set_source(event, workstation)
        status = _int(d.get("Status"))
        if status in (None, 0):
            event.outcome = SUCCESS
        else:
            event.outcome = FAILURE
            event.failure_reason = NTSTATUS_REASONS.get(status, f"status_{status:#x}")
            event.attributes["status"] = str(d.get("Status")).lower()
        event.attributes["auth_package"] = "NTLM"
        event.application = "ntlm"

    def _share_access(self, event, d, computer):
        # The outcome is the audit's: a 5145 whose access check denied is an audit failure.
        event.type = common_pb2.EVENT_TYPE_SHARE_ACCESS
        set_user(event, _account(d, "SubjectUserName"))
        _set_domain(event, d, "SubjectDomainName")
        set_source(event, d.get("IpAddress"))
        share = _account(d, "ShareName")
        path = _account(d, "RelativeTargetName")
        if share:
            event.attributes["share.name"] = share
        if path:
            event.attributes["share.path"] = path[:1024]
        local = _account(d, "ShareLocalPath")
        if local:
            event.attributes["share.local_path"] = local[:1024]
        event.object = "\\".join(x for x in (share, path) if x)[:1024]

    def _e5140(self, event, d, computer):
        self._share_access(event, d, computer)

    def _e5145(self, event, d, computer):
        self._share_access(event, d, computer)
