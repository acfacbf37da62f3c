"""The parsers on real logs (../shared/datasets): every authentication record is recognised.

Expected counts were taken independently of the parsers, with grep (shown next
to each number) or with a plain json/csv scan in the test itself.
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from collections import Counter
from datetime import datetime, timezone

import pytest

from ueba.parsers import ParseOptions
from ueba.parsers.files import read_file
from ueba.parsers.base import canonical_user
from ueba.v1 import common_pb2 as pb

pytestmark = pytest.mark.datasets

LOGON, LOGOFF, PRIV = pb.EVENT_TYPE_LOGON, pb.EVENT_TYPE_LOGOFF, pb.EVENT_TYPE_PRIVILEGE_USE
OK, FAIL = pb.OUTCOME_SUCCESS, pb.OUTCOME_FAILURE
NOW = datetime(2026, 11, 22, tzinfo=timezone.utc)
WIN_IDS = (4624, 4625, 4634, 4647, 4648, 4672, 4688, 4768, 4769, 4771, 4776, 5140, 5145)


def tally(events) -> Counter:
    return Counter((e.type, e.outcome) for e in events)


def show(name, report) -> None:
    c = report.counts
    kinds = {f"{pb.EventType.Name(t)[11:].lower()}/{pb.Outcome.Name(o)[8:].lower()}": n for (t, o), n in sorted(tally(report.events).items())}
    print(f"\n{name}: {c.records} records, {c.events} events, {c.skipped} not account activity, {c.unparseable} unparseable; {kinds}")


def test_openssh_log(datasets):
    path = datasets / "loghub" / "OpenSSH_2k.log"
    report = read_file(path, options=ParseOptions(now=NOW))
    show("OpenSSH_2k.log", report)
    assert report.format == "syslog" and report.counts.records == 2000 and report.counts.unparseable == 0
    assert tally(report.events) == {
        # grep -c "Failed password" = 520, two of them "message repeated 5 times": 518 + 2*5;
        # grep -c "Failed none" = 4
        (LOGON, FAIL): 518 + 10 + 4,
        (LOGON, OK): 1,  # grep -c "Accepted "
        (LOGOFF, OK): 1,  # grep -c "session closed"
    }
    for e in report.events:
        assert canonical_user(e.user) and e.destination_host == "labsz"
        if e.type == LOGON:
            assert e.source_ip, e
    failures = [e for e in report.events if e.outcome == FAIL]
    assert sum(1 for e in failures if e.failure_reason == "unknown_user") == 139  # grep -c "Failed .* for invalid user"
    assert Counter(e.source_ip for e in failures).most_common(1) == [("183.62.140.253", 286)]  # grep -c "Failed.*183.62.140.253"
    assert all(e.user for e in report.events)  # every sshd line names the account tried
    # The year is unknown: the current one, rolled back because 10 December lies ahead of NOW.
    assert {e.time.ToDatetime().year for e in report.events} == {2025}


def test_openssh_every_failed_attempt_keeps_its_source_address(datasets):
    """The true attempt count per address, from the events alone, equals the file's own."""
    path = datasets / "loghub" / "OpenSSH_2k.log"
    failed = re.compile(r"sshd\[\d+\]: (?:message repeated (\d+) times: \[ )?Failed \S+ for .*? from (\S+) port \d+")
    per_address: Counter = Counter()
    for line in path.read_text().splitlines():
        m = failed.search(line)
        if m:
            per_address[m.group(2)] += int(m.group(1) or 1)
    report = read_file(path, options=ParseOptions(now=NOW))
    from_events = Counter(e.source_ip for e in report.events if e.outcome == FAIL)
    print(f"\nfailed attempts per address: {from_events.most_common(6)}")
    assert from_events == per_address and sum(per_address.values()) == 532 and len(per_address) == len(from_events)
    assert from_events["183.62.140.253"] == 286 and from_events["112.95.230.3"] == per_address["112.95.230.3"] > 0


def test_openssh_log_corroborating_records(datasets):
    """Echoes of an attempt are recognised too; counting them is an option, not the default."""
    report = read_file(datasets / "loghub" / "OpenSSH_2k.log", options=ParseOptions(now=NOW, corroborating=True))
    echoes = [e for e in report.events if e.attributes.get("corroborating") == "true"]
    by_kind = Counter((e.action.split(";")[0].split(" from")[0].split(" ")[0]) for e in echoes)
    print(f"\ncorroborating records: {len(echoes)} {dict(by_kind)}")
    # grep -c "Invalid user" = 113; grep -c "pam_unix(sshd:auth): authentication failure" = 494;
    # "PAM N more authentication failures": N summed over lines = 35; "session opened" = 1
    assert len(echoes) == 113 + 494 + 35 + 1
    hosts = [e for e in echoes if e.source_host]
    assert hosts and all(not e.source_ip for e in hosts)  # rhost=ec2-52-80-34-196.cn-north-1... is a host name


def test_linux_log(datasets):
    report = read_file(datasets / "loghub" / "Linux_2k.log", options=ParseOptions(now=NOW))
    show("Linux_2k.log", report)
    assert report.counts.records == 2000 and report.counts.unparseable == 0
    by_app = Counter((e.application, e.type, e.outcome) for e in report.events)
    assert by_app == {
        ("sshd", LOGON, FAIL): 489,  # grep -c "sshd(pam_unix).*authentication failure"
        ("sshd", LOGON, OK): 36,  # grep -c "sshd(pam_unix).*session opened"
        ("sshd", LOGOFF, OK): 36,  # grep -c "sshd(pam_unix).*session closed"
        ("su", PRIV, OK): 86,  # grep -c "su(pam_unix).*session opened"
        ("klogind", LOGON, FAIL): 23,  # grep -c "klogind.*Authentication failed from"
        ("login", LOGON, OK): 1,
        ("login", LOGOFF, OK): 1,
        ("gdm", LOGON, FAIL): 1,  # gdm(pam_unix) authentication failure, rhost empty
    }
    ssh_failures = [e for e in report.events if e.application == "sshd" and e.outcome == FAIL]
    assert sum(1 for e in ssh_failures if e.user) == 372  # ... | grep -c " user="
    # Failures that name no account keep their source and name no account: none is called "unknown".
    nameless = [e for e in report.events if not e.user]
    assert len(nameless) == (489 - 372) + 23 + 1  # sshd without user=, klogind, gdm
    assert all(e.outcome == FAIL and (e.source_ip or e.source_host) for e in nameless)
    assert not any(canonical_user(e.user) == "unknown" or e.attributes.get("user_known") for e in report.events)
    assert {e.source_ip for e in nameless if e.application == "klogind"} == {"163.27.187.39"}
    assert [e.source_host for e in nameless if e.application == "gdm"] == ["combo"]  # the console: the machine itself
    # rhost is an address or a DNS name; names go to source_host.
    named = [e for e in ssh_failures if e.source_host]
    assert len(named) + sum(1 for e in ssh_failures if e.source_ip) == 489
    assert len(named) == 189  # grep "sshd(pam_unix).*rhost=" | grep -vcE "rhost=[0-9.]+ "
    assert Counter(e.source_host for e in named)["n219076184117.netvigator.com"] == 23  # grep -c "rhost=n219076184117.netvigator.com"
    assert all(e.destination_host == "combo" for e in report.events)


def _raw_windows_records(path) -> list[dict]:
    with zipfile.ZipFile(path) as z:
        [name] = z.namelist()
        return [json.loads(line) for line in z.open(name) if line.strip()]


def test_otrf_windows_events(datasets):
    path = datasets / "otrf" / "purplesharp_ad_playbook_I_host.zip"
    report = read_file(path)
    show(path.name, report)
    raw = [r for r in _raw_windows_records(path) if r.get("Channel") == "Security" and r.get("EventID") in WIN_IDS]
    assert report.format == "winevent" and report.counts.unparseable == 0
    assert Counter(int(e.action) for e in report.events) == Counter(r["EventID"] for r in raw)
    assert Counter(int(e.action) for e in report.events) == {
        4624: 49, 4625: 7, 4634: 31, 4672: 43, 4688: 24, 4769: 17, 4776: 7, 5140: 3, 5145: 3}
    assert all(canonical_user(e.user) and e.destination_host for e in report.events)
    machine = [e for e in report.events if e.attributes.get("account_kind") == "machine"]

    def acting(r) -> str:  # the account an event is charged to, read from the raw record
        target = r.get("TargetUserName")
        if r["EventID"] in (4672, 5140, 5145) or (r["EventID"] == 4688 and target in (None, "-")):
            return r["SubjectUserName"]
        return target

    raw_machine = [r for r in raw if acting(r).split("@")[0].endswith("$")]
    assert len(machine) == len(raw_machine) == 80 and all(canonical_user(e.user).endswith("$") for e in machine)
    failures = [e for e in report.events if e.outcome == FAIL]
    # The lab's spray: 7 accounts tried from WORKSTATION5, each a 4625 with 0xC000006A and a 4776.
    assert len(failures) == 14 and {e.failure_reason for e in failures} == {"bad_password"}
    assert {canonical_user(e.user) for e in failures} == {"lrodriguez", "mscott", "nxlogsvc", "pbeesly", "pgustavo", "sbeavers", "sysmonsvc"}
    assert all(e.source_host == "workstation5" for e in failures)
    # The actor of the spray beside each tried account: pgustavo running PurpleSharp.exe.
    spray = [e for e in failures if e.action == "4625"]
    assert len(spray) == 7 and all(e.logon_type == 2 and e.attributes["logon.type"] == "interactive" for e in spray)
    assert {(e.attributes["actor.user"], e.attributes["actor.domain"], e.attributes["process.name"]) for e in spray} == {
        ("pgustavo", "THESHIRE", "PurpleSharp.exe")}
    assert {e.attributes["process.executable"] for e in spray} == {"C:\\Users\\pgustavo\\Downloads\\PurpleSharp.exe"}
    networked = [e for e in report.events if e.action == "4624" and e.source_ip]
    assert len(networked) == sum(1 for r in raw if r["EventID"] == 4624 and r.get("IpAddress") not in (None, "-"))
    # Kerberos service tickets: the service, its encryption (RC4 for the five service accounts the
    # playbook Kerberoasts), the KDC; the requester's address.
    tickets = [e for e in report.events if e.action == "4769"]
    raw_tickets = [r for r in raw if r["EventID"] == 4769]
    assert all(e.type == pb.EVENT_TYPE_SERVICE_TICKET and e.outcome == OK and e.attributes["kerberos.kdc"] == "mordordc.theshire.local" for e in tickets)
    assert Counter((e.attributes["kerberos.service"], e.attributes["kerberos.encryption"]) for e in tickets) == Counter(
        (r["ServiceName"], {"0x12": "aes256-cts-hmac-sha1-96", "0x17": "rc4-hmac"}[r["TicketEncryptionType"]]) for r in raw_tickets)
    assert {e.attributes["kerberos.service"] for e in tickets if e.attributes["kerberos.encryption"] == "rc4-hmac"} == {
        "sysmonsvc", "nxlogsvc", "defensesvc", "otrsvc", "mordorsvc"}
    assert all(e.source_ip == "172.18.39.5" for e in tickets if canonical_user(e.user) == "pgustavo")
    # Share access from pgustavo's workstation to each target: the share and the named pipe in it.
    shares = [e for e in report.events if e.action in ("5140", "5145")]
    assert all(e.type == pb.EVENT_TYPE_SHARE_ACCESS and canonical_user(e.user) == "pgustavo" and e.source_ip == "172.18.39.5" for e in shares)
    assert Counter((e.action, e.destination_host, e.attributes["share.name"], e.attributes.get("share.path")) for e in shares) == {
        (action, host, "\\\\*\\IPC$", path): 1
        for host in ("mordordc.theshire.local", "workstation6.theshire.local", "workstation7.theshire.local")
        for action, path in (("5140", None), ("5145", "srvsvc"))}
    # Process creation: the playbook itself, and the remote PowerShell hosts run for pgustavo.
    started = [e for e in report.events if e.action == "4688"]
    assert all(e.type == pb.EVENT_TYPE_PROCESS_START and e.attributes["process.executable"] == e.object for e in started)
    [playbook] = [e for e in started if e.attributes["process.name"] == "PurpleSharp.exe"]
    assert canonical_user(playbook.user) == "pgustavo" and playbook.attributes["process.parent.name"] == "cmd.exe"
    assert playbook.attributes["process.command_line"].startswith("PurpleSharp.exe  /t T1110.003,T1558.003")
    remote = [e for e in started if e.attributes["process.name"] == "wsmprovhost.exe"]
    assert len(remote) == 3 and all(canonical_user(e.user) == "pgustavo" and e.attributes["actor.user"].endswith("$") for e in remote)
    # NXLog's EventTime is local (UTC-4 here); events land on the UTC clock of @timestamp.
    # The first is PurpleSharp.exe's start, a second before its spray.
    assert min(e.time.ToDatetime() for e in report.events) == playbook.time.ToDatetime() == datetime(2020, 10, 22, 8, 29, 52)


def test_m365_unified_audit_log(datasets):
    default = read_file(datasets / "otrf" / "o365spray_default.zip")
    reporting = read_file(datasets / "otrf" / "o365spray_reporting.zip")
    show("o365spray_default.zip", default)
    show("o365spray_reporting.zip", reporting)
    assert default.format == reporting.format == "m365"
    assert tally(default.events) == {(LOGON, FAIL): 9}
    assert tally(reporting.events) == {(LOGON, FAIL): 12, (LOGON, OK): 2}
    # The reporting export repeats every record once; the Id is the event id, so ingest keeps 7.
    assert len({e.event_id for e in reporting.events}) == 7
    for e in default.events + reporting.events:
        assert canonical_user(e.user) and e.source_ip.startswith("2a09:bac") and e.application == "AzureActiveDirectory"
    assert Counter(e.failure_reason for e in default.events)["InvalidUserNameOrPassword"] == 8


def test_entra_sign_in_csv(datasets):
    path = datasets / "azure-sentinel-training-lab" / "sign-in_adelete.csv"
    report = read_file(path)
    show(path.name, report)
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert report.format == "entra" and report.counts.records == len(rows) == 56 and report.counts.unparseable == 0
    assert tally(report.events) == {(LOGON, OK): sum(r["ResultType"] == "0" for r in rows), (LOGON, FAIL): sum(r["ResultType"] != "0" for r in rows)}
    assert tally(report.events)[(LOGON, FAIL)] == 3
    assert {e.event_id for e in report.events} == {r["Id"] for r in rows}
    for e in report.events:
        assert (canonical_user(e.user), e.source_ip, e.geo.country_code, e.geo.city) == ("adelev", "175.45.176.99", "IL", "Azor")
        assert e.geo.has_coordinates and e.application
