"""Parsers on hand-written records in each format (the real files are in test_datasets.py)."""

from __future__ import annotations

import json
import zipfile
from datetime import datetime, timezone

import pytest

from ueba.parsers import ParseError, ParseOptions, parser_for, zone
from ueba.parsers.detect import DetectionError, detect_text
from ueba.parsers.files import read_file
from ueba.parsers.base import canonical_user
from ueba.v1 import common_pb2 as pb

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
OPTS = ParseOptions(now=NOW)


def one(fmt: str, record, options: ParseOptions = OPTS) -> pb.Event:
    events = parser_for(fmt, options).parse(record)
    assert len(events) == 1, events
    return events[0]


def ts(event: pb.Event) -> datetime:
    return event.time.ToDatetime(tzinfo=timezone.utc)


# -- ECS -------------------------------------------------------------------------

ECS_NESTED = {
    "@timestamp": "2026-02-03T04:05:06.789Z",
    "event": {"category": ["authentication"], "type": ["start"], "action": "user_login", "outcome": "failure", "id": "abc-1"},
    "user": {"name": "CORP\\Alice"},
    "source": {"ip": "203.0.113.9", "geo": {"country_iso_code": "de", "city_name": "Berlin", "location": {"lat": 52.5, "lon": 13.4}}},
    "host": {"name": "VPN-GW1"},
    "user_agent": {"original": "curl/8"},
}


def test_ecs_nested_and_dotted_keys_map_alike():
    nested = one("ecs", json.dumps(ECS_NESTED))
    dotted = one(
        "ecs",
        json.dumps(
            {
                "@timestamp": "2026-02-03T04:05:06.789Z",
                "event.category": "authentication",
                "event.action": "user_login",
                "event.outcome": "failure",
                "event.id": "abc-1",
                "user.name": "CORP\\Alice",
                "source.ip": "203.0.113.9",
                "source.geo.country_iso_code": "de",
                "source.geo.city_name": "Berlin",
                "source.geo.location": {"lat": 52.5, "lon": 13.4},
                "host.name": "VPN-GW1",
                "user_agent.original": "curl/8",
            }
        ),
    )
    for event in (nested, dotted):
        assert canonical_user(event.user) == "alice"
        assert event.type == pb.EVENT_TYPE_LOGON and event.outcome == pb.OUTCOME_FAILURE
        assert event.source_ip == "203.0.113.9" and event.destination_host == "vpn-gw1"
        assert (event.geo.country_code, event.geo.city, event.geo.has_coordinates) == ("DE", "Berlin", True)
        assert event.geo.latitude == 52.5 and event.user_agent == "curl/8"
        assert event.event_id == "abc-1"
        assert ts(event) == datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "fields,expected",
    [
        ({"event.action": "file-downloaded", "file.size": 2048}, pb.EVENT_TYPE_FILE_DOWNLOAD),
        ({"event.category": "file", "event.type": "deletion"}, pb.EVENT_TYPE_FILE_DELETE),
        ({"event.action": "logged-out"}, pb.EVENT_TYPE_LOGOFF),
        ({"event.category": "iam", "event.action": "password-reset"}, pb.EVENT_TYPE_PASSWORD_CHANGE),
        ({"event.action": "file_share"}, pb.EVENT_TYPE_FILE_SHARE),
    ],
)
def test_ecs_event_types(fields, expected):
    record = {"@timestamp": "2026-02-03T04:05:06Z", "user.name": "bob", **fields}
    event = one("ecs", record)
    assert event.type == expected
    if "file.size" in fields:
        assert event.bytes == 2048


def test_ecs_source_address_host_name_is_kept_beside_source_ip():
    record = {"@timestamp": "2026-02-03T04:05:06Z", "user.name": "bob", "event.action": "user_login",
              "source": {"ip": "203.0.113.9", "address": "VPN-Client-7.corp.example"}, "destination": {"address": "10.0.0.5"}}
    event = one("ecs", record)
    assert (event.source_ip, event.source_host, event.destination_ip) == ("203.0.113.9", "vpn-client-7.corp.example", "10.0.0.5")
    domain = one("ecs", {**record, "source": {"address": "203.0.113.9", "domain": "gw.example"}})
    assert (domain.source_ip, domain.source_host) == ("203.0.113.9", "gw.example")
    name_only = one("ecs", {**record, "source": {"address": "laptop-3"}})
    assert (name_only.source_ip, name_only.source_host) == ("", "laptop-3")


def test_ecs_without_user_or_action_is_an_error_with_a_reason():
    with pytest.raises(ParseError, match="user"):
        parser_for("ecs").parse('{"@timestamp": "2026-02-03T04:05:06Z", "event.action": "login"}')
    with pytest.raises(ParseError, match="user"):  # a success must name its account
        parser_for("ecs").parse('{"@timestamp": "2026-02-03T04:05:06Z", "event.action": "login", "source.ip": "192.0.2.1"}')
    nameless = one("ecs", {"@timestamp": "2026-02-03T04:05:06Z", "event.action": "login", "event.outcome": "failure", "source.ip": "192.0.2.1"})
    assert (nameless.user, nameless.source_ip, nameless.outcome) == ("", "192.0.2.1", pb.OUTCOME_FAILURE)
    with pytest.raises(ParseError, match="what happened"):
        parser_for("ecs").parse('{"@timestamp": "2026-02-03T04:05:06Z", "user.name": "bob"}')
    with pytest.raises(ParseError, match="not JSON"):
        parser_for("ecs").parse("{oops")


def test_ecs_events_without_an_id_get_a_stable_one():
    record = {"@timestamp": "2026-02-03T04:05:06Z", "user.name": "bob", "event.action": "login"}
    first, again = one("ecs", record), one("ecs", dict(reversed(list(record.items()))))
    assert first.event_id and first.event_id == again.event_id
    assert one("ecs", {**record, "user.name": "carol"}).event_id != first.event_id


# -- Windows ---------------------------------------------------------------------

NXLOG_4625 = {
    "EventID": 4625, "Channel": "Security", "Hostname": "WS5.corp.local", "RecordNumber": 77,
    "EventTime": "2020-10-22 04:29:53", "EventReceivedTime": "2020-10-22 04:29:55", "@timestamp": "2020-10-22T08:29:55.210Z",
    "TargetUserName": "lrodriguez", "TargetDomainName": "CORP", "LogonType": "2", "IpAddress": "-",
    "WorkstationName": "WS5", "Status": "0xc000006d", "SubStatus": "0xc000006a",
}
WINLOGBEAT_4624 = {
    "@timestamp": "2026-01-10T09:00:00.123Z",
    "event": {"code": "4624", "outcome": "success"},
    "winlog": {
        "event_id": "4624", "channel": "Security", "computer_name": "DC01.corp.local", "record_id": 991,
        "event_data": {"TargetUserName": "SRV01$", "TargetDomainName": "CORP", "LogonType": "3", "IpAddress": "::ffff:10.0.0.8", "WorkstationName": "-"},
    },
}
OTEL_4771 = {
    "event_id": {"id": 4771, "qualifiers": 0},
    "provider": {"name": "Microsoft-Windows-Security-Auditing"},
    "computer": "DC01.corp.local", "channel": "Security", "record_id": 12, "system_time": "2026-01-10T09:01:02.1234567Z",
    "event_data": {"data": [{"TargetUserName": "bob"}, {"IpAddress": "::ffff:10.0.0.9"}, {"Status": "0x18"}]},
}


def test_nxlog_4625_failure_reason_from_sub_status_and_local_time_offset():
    event = one("winevent", NXLOG_4625)
    assert (canonical_user(event.user), event.type, event.outcome) == ("lrodriguez", pb.EVENT_TYPE_LOGON, pb.OUTCOME_FAILURE)
    assert event.failure_reason == "bad_password"  # 0xC000006D says "bad name or password"; 0xC000006A says which
    assert event.logon_type == 2 and event.attributes["logon.type"] == "interactive"
    assert event.source_host == "ws5" and event.destination_host == "ws5.corp.local" and not event.source_ip
    # EventTime is the agent's local time; @timestamp - EventReceivedTime gives its offset (-4h).
    assert ts(event) == datetime(2020, 10, 22, 8, 29, 53, tzinfo=timezone.utc)


def test_nxlog_unknown_user_status():
    event = one("winevent", {**NXLOG_4625, "SubStatus": "0xc0000064"})
    assert event.failure_reason == "unknown_user"
    locked = one("winevent", {**NXLOG_4625, "Status": "0xc0000234", "SubStatus": "0x0"})
    assert locked.failure_reason == "account_locked"


def test_winlogbeat_machine_account_is_flagged():
    event = one("winevent", WINLOGBEAT_4624)
    assert canonical_user(event.user) == "srv01$" and event.attributes["account_kind"] == "machine"
    assert event.source_ip == "10.0.0.8" and event.destination_host == "dc01.corp.local"
    assert event.outcome == pb.OUTCOME_SUCCESS and event.logon_type == 3


def test_otel_collector_body_with_data_list_and_kerberos_code():
    event = one("winevent", OTEL_4771)
    assert (canonical_user(event.user), event.outcome, event.failure_reason) == ("bob", pb.OUTCOME_FAILURE, "bad_password")
    assert event.source_ip == "10.0.0.9"
    assert ts(event) == datetime(2026, 1, 10, 9, 1, 2, 123456, tzinfo=timezone.utc)


def test_event_xml_as_forwarded_or_sent_raw_by_the_collector():
    xml = (
        '<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System>'
        '<Provider Name="Microsoft-Windows-Security-Auditing"/><EventID>4624</EventID>'
        '<TimeCreated SystemTime="2026-01-10T09:00:00.1234567Z"/><EventRecordID>55</EventRecordID>'
        "<Channel>Security</Channel><Computer>DC01.corp.local</Computer></System><EventData>"
        '<Data Name="TargetUserName">alice</Data><Data Name="LogonType">10</Data><Data Name="IpAddress">10.1.2.3</Data>'
        "</EventData></Event>"
    )
    event = one("winevent", xml)
    assert (canonical_user(event.user), event.logon_type, event.source_ip, event.attributes["shape"]) == ("alice", 10, "10.1.2.3", "xml")
    with pytest.raises(ParseError, match="not event XML"):
        parser_for("winevent").parse("<Event><oops")


@pytest.mark.parametrize(
    "event_id,data,kind,outcome",
    [
        (4634, {"TargetUserName": "bob", "LogonType": "3"}, pb.EVENT_TYPE_LOGOFF, pb.OUTCOME_SUCCESS),
        (4647, {"TargetUserName": "bob"}, pb.EVENT_TYPE_LOGOFF, pb.OUTCOME_SUCCESS),
        (4648, {"SubjectUserName": "bob", "TargetUserName": "admin", "TargetServerName": "FS01"}, pb.EVENT_TYPE_HOST_ACCESS, pb.OUTCOME_SUCCESS),
        (4672, {"SubjectUserName": "bob", "PrivilegeList": "SeDebugPrivilege\r\n\t\tSeBackupPrivilege"}, pb.EVENT_TYPE_PRIVILEGE_USE, pb.OUTCOME_SUCCESS),
        (4768, {"TargetUserName": "bob", "Status": "0x6", "IpAddress": "10.0.0.1"}, pb.EVENT_TYPE_LOGON, pb.OUTCOME_FAILURE),
        (4769, {"TargetUserName": "bob@CORP.LOCAL", "ServiceName": "FS01$", "Status": "0x0"}, pb.EVENT_TYPE_SERVICE_TICKET, pb.OUTCOME_SUCCESS),
        (4769, {"TargetUserName": "bob@CORP.LOCAL", "ServiceName": "MSSQLSvc", "Status": "0x0"}, pb.EVENT_TYPE_SERVICE_TICKET, pb.OUTCOME_SUCCESS),
        (4776, {"TargetUserName": "bob", "Workstation": "WS1", "Status": "0xc0000064"}, pb.EVENT_TYPE_LOGON, pb.OUTCOME_FAILURE),
    ],
)
def test_security_event_ids(event_id, data, kind, outcome):
    record = {"EventID": event_id, "Channel": "Security", "Hostname": "DC01", "RecordNumber": 1, "@timestamp": "2026-01-10T09:00:00Z", **data}
    event = one("winevent", record)
    assert (event.type, event.outcome, canonical_user(event.user)) == (kind, outcome, "admin" if event_id == 4648 else "bob")
    assert event.action == str(event_id)
    if event_id == 4648:
        assert event.destination_host == "fs01" and event.attributes["actor.user"] == "bob"
    if event_id == 4769:
        assert event.object == event.attributes["kerberos.service"] == data["ServiceName"]
        assert event.destination_host == ("fs01" if data["ServiceName"] == "FS01$" else "dc01")
    if event_id == 4776:
        assert event.failure_reason == "unknown_user" and event.source_host == "ws1"


def test_other_windows_events_are_not_account_activity_and_junk_is_an_error():
    assert parser_for("winevent").parse({"EventID": 5156, "Channel": "Security", "@timestamp": "2026-01-10T09:00:00Z"}) == []
    assert parser_for("winevent").parse({"EventID": 4624, "Channel": "Microsoft-Windows-Sysmon/Operational", "@timestamp": "2026-01-10T09:00:00Z"}) == []
    with pytest.raises(ParseError, match="not a Windows event"):
        parser_for("winevent").parse({"hello": 1})
    with pytest.raises(ParseError, match="names no account"):
        parser_for("winevent").parse({"EventID": 4624, "Channel": "Security", "@timestamp": "2026-01-10T09:00:00Z", "TargetUserName": "-"})
    # A failure that names no account but its source is kept, about that source.
    with pytest.raises(ParseError, match="names no account"):
        parser_for("winevent").parse({**NXLOG_4625, "TargetUserName": "-", "WorkstationName": "-"})
    nameless = one("winevent", {**NXLOG_4625, "TargetUserName": "-", "IpAddress": "192.0.2.7"})
    assert (nameless.user, nameless.source_ip, nameless.source_host, nameless.outcome) == ("", "192.0.2.7", "ws5", pb.OUTCOME_FAILURE)


@pytest.mark.parametrize(
    "value,number,name",
    [("3", 3, "network"), (10, 10, "remote_interactive"), ("Network", 3, "network"), ("RemoteInteractive", 10, "remote_interactive"),
     ("CachedInteractive", 11, "cached_interactive"), ("NetworkCleartext", 8, "network_cleartext"), ("new_credentials", 9, "new_credentials")],
)
def test_logon_types_as_numbers_or_winlogbeat_words(value, number, name):
    beat = {**WINLOGBEAT_4624, "winlog": {**WINLOGBEAT_4624["winlog"], "logon": {"type": value}}}
    beat["winlog"]["event_data"] = {k: v for k, v in beat["winlog"]["event_data"].items() if k != "LogonType"}
    ecs = {"@timestamp": "2026-01-10T09:00:00Z", "user.name": "bob", "event.action": "logged-in", "winlog.logon.type": value}
    for event in (one("winevent", beat), one("ecs", ecs), one("winevent", {**NXLOG_4625, "LogonType": value})):
        assert (event.logon_type, event.attributes["logon.type"]) == (number, name)


def test_windows_actor_process_and_domain_beside_the_target_account():
    event = one("winevent", {**NXLOG_4625, "SubjectUserName": "pgustavo", "SubjectDomainName": "THESHIRE",
                             "ProcessName": "C:\\Users\\pgustavo\\Downloads\\PurpleSharp.exe"})
    assert canonical_user(event.user) == "lrodriguez" and event.attributes["domain"] == "CORP"
    assert (event.attributes["actor.user"], event.attributes["actor.domain"]) == ("pgustavo", "THESHIRE")
    assert event.attributes["process.name"] == "PurpleSharp.exe"
    assert event.attributes["process.executable"] == "C:\\Users\\pgustavo\\Downloads\\PurpleSharp.exe"
    # A logon whose subject is '-' has no actor.
    assert "actor.user" not in one("winevent", {**NXLOG_4625, "SubjectUserName": "-"}).attributes


def test_kerberos_ticket_encryption_service_and_failure_code():
    base = {"Channel": "Security", "Hostname": "DC01.corp.local", "RecordNumber": 5, "@timestamp": "2026-01-10T09:00:00Z",
            "TargetUserName": "bob@CORP.LOCAL", "IpAddress": "::ffff:10.0.0.4"}
    roast = one("winevent", {**base, "EventID": 4769, "ServiceName": "sqlsvc", "TicketEncryptionType": "0x17", "Status": "0x0"})
    assert roast.type == pb.EVENT_TYPE_SERVICE_TICKET and roast.outcome == pb.OUTCOME_SUCCESS
    assert {k: roast.attributes[k] for k in ("kerberos.service", "kerberos.encryption", "kerberos.kdc")} == {
        "kerberos.service": "sqlsvc", "kerberos.encryption": "rc4-hmac", "kerberos.kdc": "dc01.corp.local"}
    assert "kerberos.failure_code" not in roast.attributes and roast.source_ip == "10.0.0.4"
    tgt = one("winevent", {**base, "EventID": 4768, "ServiceName": "krbtgt", "TicketEncryptionType": "0xffffffff", "Status": "0x12"})
    assert (tgt.type, tgt.outcome, tgt.failure_reason) == (pb.EVENT_TYPE_LOGON, pb.OUTCOME_FAILURE, "account_disabled_or_locked")
    assert tgt.attributes["kerberos.failure_code"] == "0x12" and "kerberos.encryption" not in tgt.attributes
    preauth = one("winevent", {**base, "EventID": 4771, "ServiceName": "krbtgt/CORP.LOCAL", "Status": "0x18"})
    assert (preauth.attributes["kerberos.service"], preauth.attributes["kerberos.failure_code"]) == ("krbtgt/CORP.LOCAL", "0x18")


def test_a_denied_share_access_is_a_failure_in_every_agent_shape():
    data = {"SubjectUserName": "bob", "ShareName": "\\\\*\\C$", "RelativeTargetName": "x", "IpAddress": "10.0.0.4"}
    beat = {"@timestamp": "2026-01-10T09:00:00Z", "winlog": {"event_id": 5145, "channel": "Security", "computer_name": "FS01",
                                                               "keywords": ["Audit Failure"], "event_data": data}}
    otel = {"event_id": {"id": 5145}, "channel": "Security", "computer": "FS01", "system_time": "2026-01-10T09:00:00Z",
            "keywords": ["Audit Failure"], "event_data": data}
    xml = ('<Event><System><EventID>5145</EventID><TimeCreated SystemTime="2026-01-10T09:00:00Z"/><Channel>Security</Channel>'
           "<Computer>FS01</Computer><Keywords>0x8010000000000000</Keywords></System><EventData>"
           + "".join(f'<Data Name="{k}">{v}</Data>' for k, v in data.items()) + "</EventData></Event>")
    for record in (beat, otel, xml):
        event = one("winevent", record)
        assert (event.type, event.outcome, event.attributes["share.path"]) == (pb.EVENT_TYPE_SHARE_ACCESS, pb.OUTCOME_FAILURE, "x")
    allowed = {**beat, "winlog": {**beat["winlog"], "keywords": ["Audit Success"]}}
    assert one("winevent", allowed).outcome == pb.OUTCOME_SUCCESS
    assert one("winevent", xml.replace("0x8010000000000000", "0x8020000000000000")).outcome == pb.OUTCOME_SUCCESS


def test_share_access_and_process_creation():
    base = {"Channel": "Security", "Hostname": "FS01.corp.local", "RecordNumber": 9, "@timestamp": "2026-01-10T09:00:00Z",
            "SubjectUserName": "bob", "SubjectDomainName": "CORP", "IpAddress": "10.0.0.4"}
    share = one("winevent", {**base, "EventID": 5145, "ShareName": "\\\\*\\Finance", "RelativeTargetName": "q3\\plan.xlsx",
                             "ShareLocalPath": "\\??\\D:\\Finance", "EventType": "AUDIT_FAILURE"})
    assert (share.type, share.outcome, canonical_user(share.user), share.source_ip) == (pb.EVENT_TYPE_SHARE_ACCESS, pb.OUTCOME_FAILURE, "bob", "10.0.0.4")
    assert (share.attributes["share.name"], share.attributes["share.path"]) == ("\\\\*\\Finance", "q3\\plan.xlsx")
    assert share.object == "\\\\*\\Finance\\q3\\plan.xlsx" and share.attributes["share.local_path"] == "\\??\\D:\\Finance"
    opened = one("winevent", {**base, "EventID": 5140, "ShareName": "\\\\*\\IPC$"})
    assert opened.outcome == pb.OUTCOME_SUCCESS and "share.path" not in opened.attributes and opened.object == "\\\\*\\IPC$"
    started = one("winevent", {**base, "EventID": 4688, "TargetUserName": "-", "NewProcessName": "C:\\Windows\\System32\\cmd.exe",
                               "ParentProcessName": "C:\\Windows\\explorer.exe", "CommandLine": "cmd.exe /c whoami"})
    assert (started.type, canonical_user(started.user), started.object) == (pb.EVENT_TYPE_PROCESS_START, "bob", "C:\\Windows\\System32\\cmd.exe")
    assert (started.attributes["process.name"], started.attributes["process.parent.name"]) == ("cmd.exe", "explorer.exe")
    assert started.attributes["process.command_line"] == "cmd.exe /c whoami" and "actor.user" not in started.attributes
    # Run as another account: that account's process, its creator the actor.
    remote = one("winevent", {**base, "EventID": 4688, "SubjectUserName": "FS01$", "TargetUserName": "alice", "NewProcessName": "C:\\w\\wsmprovhost.exe"})
    assert (canonical_user(remote.user), remote.attributes["actor.user"]) == ("alice", "fs01$")


# -- syslog ----------------------------------------------------------------------


def test_sshd_accepted_failed_and_invalid_user():
    p = parser_for("syslog", OPTS)
    [ok] = p.parse("Feb 10 06:55:46 bastion sshd[100]: Accepted publickey for alice from 198.51.100.7 port 50000 ssh2: RSA SHA256:x")
    assert (canonical_user(ok.user), ok.type, ok.outcome, ok.source_ip, ok.destination_host) == ("alice", pb.EVENT_TYPE_LOGON, pb.OUTCOME_SUCCESS, "198.51.100.7", "bastion")
    assert ok.attributes["auth_method"] == "publickey"
    [bad] = p.parse("Feb 10 06:55:48 bastion sshd[101]: Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2")
    assert (canonical_user(bad.user), bad.outcome, bad.failure_reason) == ("webmaster", pb.OUTCOME_FAILURE, "unknown_user")
    [key] = p.parse("Feb 10 06:55:49 bastion sshd[102]: Failed publickey for root from 10.1.1.1 port 22 ssh2")
    assert key.failure_reason == "bad_key"
    # sshd announces the unknown account before the failed attempt: recognised, but not a second event.
    invalid = "Feb 10 06:55:46 bastion sshd[101]: Invalid user webmaster from 173.234.31.186"
    assert p.parse(invalid) == []
    [echo] = parser_for("syslog", ParseOptions(now=NOW, corroborating=True)).parse(invalid)
    assert echo.attributes["corroborating"] == "true" and canonical_user(echo.user) == "webmaster"


def test_repeated_message_gives_one_event_per_repeat_with_distinct_ids():
    events = parser_for("syslog", OPTS).parse(
        "Feb 10 07:13:56 h sshd[24227]: message repeated 5 times: [ Failed password for root from 5.36.59.76 port 42393 ssh2]"
    )
    assert len(events) == 5 and len({e.event_id for e in events}) == 5
    assert all(canonical_user(e.user) == "root" and e.outcome == pb.OUTCOME_FAILURE for e in events)


def test_pam_rhost_host_name_goes_to_source_host_and_legacy_tag_is_an_event():
    p = parser_for("syslog", OPTS)
    [event] = p.parse(
        "Jan 15 02:04:59 combo sshd(pam_unix)[20882]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=220-135-151-1.hinet-ip.hinet.net  user=root"
    )
    assert event.source_host == "220-135-151-1.hinet-ip.hinet.net" and not event.source_ip
    assert (canonical_user(event.user), event.outcome) == ("root", pb.OUTCOME_FAILURE)
    # A failure naming no account keeps its source and names no account (none called "unknown").
    [anon] = p.parse("Jan 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 ")
    assert (anon.user, anon.source_ip, anon.failure_reason) == ("", "218.188.2.4", "unknown_user") and not anon.attributes.get("user_known")
    # At the console (`rhost=` empty) the source is the machine itself.
    [console] = p.parse("Jul 11 11:33:13 combo gdm(pam_unix)[2803]: authentication failure; logname= uid=0 euid=0 tty=:0 ruser= rhost= ")
    assert (console.user, console.source_host, console.source_ip) == ("", "combo", "")
    # The modern in-process form repeats sshd's own line.
    assert p.parse("Jan 10 06:55:46 LabSZ sshd[24200]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root") == []


def test_sessions_su_and_sudo():
    p = parser_for("syslog", OPTS)
    [opened] = p.parse("Jan 20 10:00:00 combo sshd(pam_unix)[1]: session opened for user test by (uid=508)")
    assert (opened.type, opened.outcome, canonical_user(opened.user)) == (pb.EVENT_TYPE_LOGON, pb.OUTCOME_SUCCESS, "test")
    [closed] = p.parse("Jan 20 10:05:00 combo sshd(pam_unix)[1]: session closed for user test")
    assert closed.type == pb.EVENT_TYPE_LOGOFF
    [su] = p.parse("Jan 20 04:06:18 combo su(pam_unix)[2]: session opened for user news by (uid=0)")
    assert (su.type, canonical_user(su.user)) == (pb.EVENT_TYPE_PRIVILEGE_USE, "news")
    [sudo] = p.parse("Jan 20 04:06:18 host sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/cat /etc/shadow")
    assert (sudo.type, canonical_user(sudo.user), sudo.attributes["target_user"]) == (pb.EVENT_TYPE_PRIVILEGE_USE, "alice", "root")
    assert p.parse("Jan 20 04:06:18 combo kernel: Linux version 2.6.5") == []


def test_rfc3164_year_rolls_back_for_future_dates_and_zone_is_configurable():
    line = "Dec 10 06:55:46 h sshd[1]: Accepted password for a from 10.0.0.1 port 1 ssh2"
    assert ts(one("syslog", line)) == datetime(2025, 12, 10, 6, 55, 46, tzinfo=timezone.utc)  # NOW is March 2026
    assert ts(one("syslog", line.replace("Dec 10", "Feb 10"))).year == 2026
    pinned = ParseOptions(year=2019, timezone=zone("Europe/Berlin"), now=NOW)
    assert ts(one("syslog", line, pinned)) == datetime(2019, 12, 10, 5, 55, 46, tzinfo=timezone.utc)
    assert ts(one("syslog", line, ParseOptions(year=2019, timezone=zone("+02:00")))).hour == 4


def test_rfc5424_and_iso_headers():
    [a] = parser_for("syslog", OPTS).parse(
        "<38>1 2026-02-01T10:00:00.5+01:00 bastion sshd 4242 - [meta x=\"1\\]\"] Failed password for bob from 10.0.0.2 port 2 ssh2"
    )
    assert (canonical_user(a.user), a.destination_host, ts(a)) == ("bob", "bastion", datetime(2026, 2, 1, 9, 0, 0, 500000, tzinfo=timezone.utc))
    [b] = parser_for("syslog", OPTS).parse("2026-02-01T10:00:00Z bastion sshd[7]: Accepted password for bob from 10.0.0.2 port 2 ssh2")
    assert b.outcome == pb.OUTCOME_SUCCESS


def test_non_syslog_line_is_an_error():
    with pytest.raises(ParseError, match="not a syslog line"):
        parser_for("syslog").parse("this is not syslog")


# -- CEF -------------------------------------------------------------------------


def test_cef_with_syslog_header_escapes_and_extension():
    line = (
        "Feb 10 06:55:46 fw01 CEF:0|Acme|VPN\\|Gateway|1.0|100|User login failed|5|"
        "rt=1767225600000 duser=CORP\\\\bob src=203.0.113.5 dhost=vpn.corp.local outcome=failure "
        "msg=bad password \\= wrong cs1Label=reason cs1=expired token requestClientApplication=Mozilla/5.0 (X11)"
    )
    event = one("cef", line)
    assert canonical_user(event.user) == "bob" and event.type == pb.EVENT_TYPE_LOGON and event.outcome == pb.OUTCOME_FAILURE
    assert event.source_ip == "203.0.113.5" and event.destination_host == "vpn.corp.local"
    assert event.producer == "acme/vpn|gateway"
    assert event.failure_reason == "expired token" and event.user_agent == "Mozilla/5.0 (X11)"
    assert ts(event) == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_cef_errors():
    with pytest.raises(ParseError, match="header"):
        parser_for("cef").parse("CEF:0|Acme|VPN|1.0")
    with pytest.raises(ParseError, match="user"):
        parser_for("cef").parse("CEF:0|Acme|VPN|1.0|1|login|5|rt=1767225600000 src=10.0.0.1")
    # A failure that names no account but its source stands, for its source.
    nameless = one("cef", "CEF:0|Acme|VPN|1.0|1|login|5|rt=1767225600000 src=10.0.0.1 shost=kiosk-2 outcome=failure")
    assert (nameless.user, nameless.source_ip, nameless.source_host, nameless.outcome) == ("", "10.0.0.1", "kiosk-2", pb.OUTCOME_FAILURE)


# -- Microsoft -------------------------------------------------------------------

UAL = {
    "CreationTime": "2023-07-23T12:13:33", "Id": "2eaee53c-1a71-468b-ae64-3b61f5770600", "Operation": "UserLoginFailed",
    "ResultStatus": "Failed", "UserId": "Henrietta@contoso.onmicrosoft.com", "ClientIP": "[2a09:bac5:114:105::1a:9b]:443",
    "Workload": "AzureActiveDirectory", "LogonError": "InvalidUserNameOrPassword",
    "ExtendedProperties": [{"Name": "UserAgent", "Value": "Mozilla/5.0"}],
}


def test_m365_sign_in_uses_its_id_so_repeats_dedupe():
    event = one("m365", UAL)
    assert event.event_id == UAL["Id"]
    assert (canonical_user(event.user), event.outcome, event.failure_reason) == ("henrietta", pb.OUTCOME_FAILURE, "InvalidUserNameOrPassword")
    assert event.source_ip == "2a09:bac5:114:105::1a:9b" and event.user_agent == "Mozilla/5.0"
    assert ts(event) == datetime(2023, 7, 23, 12, 13, 33, tzinfo=timezone.utc)
    assert one("m365", {**UAL, "Operation": "UserLoggedIn", "ResultStatus": "Success"}).outcome == pb.OUTCOME_SUCCESS
    assert parser_for("m365").parse({**UAL, "Operation": "MailboxLogin2"}) == []


def test_entra_graph_json():
    record = {
        "id": "66ea54eb-6301-4ee5-be62-ff5a759b0100", "createdDateTime": "2026-01-10T09:00:00Z",
        "userPrincipalName": "alice@contoso.com", "ipAddress": "198.51.100.1", "appDisplayName": "Azure Portal",
        "status": {"errorCode": 50126, "failureReason": "Invalid username or password"},
        "location": {"city": "Redmond", "countryOrRegion": "US", "geoCoordinates": {"latitude": 47.6, "longitude": -122.1}},
    }
    event = one("entra", record)
    assert (canonical_user(event.user), event.outcome, event.failure_reason) == ("alice", pb.OUTCOME_FAILURE, "Invalid username or password")
    assert (event.geo.country_code, event.geo.city, event.geo.has_coordinates) == ("US", "Redmond", True)
    assert event.event_id == record["id"] and event.application == "Azure Portal"


def test_entra_csv_export_with_bom_crlf_and_json_cells(tmp_path):
    header = "Id,CreatedDateTime [UTC],UserPrincipalName,IPAddress,AppDisplayName,ResultType,LocationDetails_dynamic,Status_dynamic\r\n"
    row_ok = (
        'a1,"4/28/2021, 2:08:45.221 PM",adelev@contoso.com,175.45.176.99,Azure Portal,0,"{\r\n  ""countryOrRegion"": ""IL"",\r\n'
        '  ""city"": ""Azor"", ""geoCoordinates"": {""latitude"": 32.0, ""longitude"": 34.8}}","{""errorCode"":0}"\r\n'
    )
    row_bad = 'a2,"4/28/2021, 2:29:08.356 PM",adelev@contoso.com,175.45.176.99,SharePoint,16000,{},"{""errorCode"":16000,""failureReason"":""Other""}"\r\n'
    path = tmp_path / "signins.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (header + row_ok + "a3,broken\r\n" + row_bad).encode())
    report = read_file(path)
    assert report.format == "entra"
    ok, bad = report.events
    assert canonical_user(ok.user) == "adelev" and ok.outcome == pb.OUTCOME_SUCCESS and ok.geo.city == "Azor"
    assert ts(ok) == datetime(2021, 4, 28, 14, 8, 45, 221000, tzinfo=timezone.utc)
    assert bad.outcome == pb.OUTCOME_FAILURE and bad.failure_reason == "Other"
    # The broken row is reported with the line it starts on (the first record spans lines 2-4).
    assert report.counts.unparseable == 1 and report.counts.errors[0][0] == 5


# -- files and detection ---------------------------------------------------------


def test_detection_from_first_lines():
    assert detect_text([json.dumps(ECS_NESTED)]) == ("ecs", "lines")
    assert detect_text([json.dumps(NXLOG_4625)]) == ("winevent", "lines")
    assert detect_text([json.dumps(WINLOGBEAT_4624)]) == ("winevent", "lines")
    assert detect_text([json.dumps(UAL)]) == ("m365", "lines")
    assert detect_text(["Feb 10 06:55:46 h sshd[1]: hello"]) == ("syslog", "lines")
    assert detect_text(["CEF:0|a|b|1|2|login|3|duser=x"]) == ("cef", "lines")
    assert detect_text(["\ufeffId,CreatedDateTime [UTC],UserPrincipalName,IPAddress,ResultType\r\n"]) == ("entra", "csv")
    with pytest.raises(DetectionError):
        detect_text(["hello world", "nothing here"])


def test_unparseable_lines_are_counted_with_line_numbers(tmp_path):
    path = tmp_path / "auth.log"
    path.write_text(
        "Feb 10 06:55:46 h sshd[1]: Accepted password for a from 10.0.0.1 port 1 ssh2\n"
        "garbage line\n"
        "\n"
        "Feb 10 06:55:47 h kernel: nothing to see\n"
        "Feb 31 06:55:47 h sshd[2]: Accepted password for a from 10.0.0.1 port 1 ssh2\n"
    )
    report = read_file(path, options=OPTS)
    assert report.format == "syslog"
    assert (report.counts.records, report.counts.events, report.counts.skipped, report.counts.unparseable) == (4, 1, 1, 2)
    assert [n for n, _ in report.counts.errors] == [2, 5]
    assert "not a syslog line" in report.counts.errors[0][1] and "bad date" in report.counts.errors[1][1]


def test_zip_of_json_lines_is_read_directly(tmp_path):
    path = tmp_path / "events.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.json", "\n".join(json.dumps({**NXLOG_4625, "RecordNumber": n}) for n in range(3)) + "\n")
    report = read_file(path)
    assert report.format == "winevent" and len(report.events) == 3 and len({e.event_id for e in report.events}) == 3


def test_entra_portal_json_array_download(tmp_path):
    rows = [
        {"id": f"id-{n}", "createdDateTime": f"2026-01-10T09:0{n}:00Z", "userPrincipalName": "Alice@contoso.com",
         "ipAddress": "198.51.100.1", "appDisplayName": "Teams", "status": {"errorCode": 0 if n else 50126}}
        for n in range(3)
    ]
    path = tmp_path / "InteractiveSignIns.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(rows, indent=2).replace("\n", "\r\n").encode())
    report = read_file(path)
    assert report.format == "entra" and [e.event_id for e in report.events] == ["id-0", "id-1", "id-2"]
    assert [e.outcome for e in report.events] == [pb.OUTCOME_FAILURE, pb.OUTCOME_SUCCESS, pb.OUTCOME_SUCCESS]
    from ueba.parsers.files import iter_records, sources

    [source] = sources(path)
    records = list(iter_records(source, "json-array"))
    assert records[0].line_no == 2 and records[-1].end_offset < path.stat().st_size
    resumed = list(iter_records(source, "json-array", records[0].end_offset))
    assert [r.value["id"] for r in resumed] == ["id-1", "id-2"]
