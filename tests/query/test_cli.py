"""The `ueba` query commands against a real query server, and against none."""

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta

import pytest

from ueba.cli.main import main
from ueba.cli.query import print_summary

from .conftest import NOW


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def data(store):
    store.user("alice", "Finance")
    ids = [store.anomaly("alice", 92, description="12 failed logins"), store.anomaly("bob", 45, kind="bulk_download", dimension="data", description="bulk download")]
    day = NOW.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    store.event_score("alice", day + timedelta(hours=4), "authentication", 88, [{"name": "failures", "expected": 1, "observed": 9, "share": 1}])
    store.user_score("alice", day.date(), 55.0)
    return ids, day


def test_summary_in_every_format(svc, data, capsys):
    code, out, _ = run(capsys, "summary", "--address", svc.address)
    assert code == 0 and "Riskiest users:" in out and "alice" in out and "critical" in out
    assert "Users by current risk: critical 1, high 0, medium 1, low 0" in out  # people, not anomalies
    code, out, _ = run(capsys, "summary", "--address", svc.address, "--output", "json")
    body = json.loads(out)
    assert [(c["key"], c["count"]) for c in body["users_by_risk_level"]] == [
        ("critical", 1), ("high", 0), ("medium", 1), ("low", 0)]
    assert body["total_anomalies"] == 2 and body["riskiest_users"][0]["user"] == "alice"
    assert body["reviewed_anomalies"] == 0 and body["riskiest_users"][0]["risk_level"] == "critical"
    code, out, _ = run(capsys, "summary", "--address", svc.address, "-o", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["section", "key", "value"] and ["user_risk", "alice", "92"] in rows


def test_anomalies_commands(svc, data, capsys):
    (alice_id, bob_id), _day = data
    code, out, _ = run(capsys, "anomalies", "list", "--address", svc.address, "-q", "risk>=high")
    assert code == 0 and alice_id in out and bob_id not in out and "1 shown of 1" in out
    code, out, _ = run(capsys, "anomalies", "list", "--address", svc.address, "--user", "bob", "-o", "json")
    assert [a["id"] for a in json.loads(out)["anomalies"]] == [bob_id]
    paged = json.loads(out)
    code, out, _ = run(capsys, "anomalies", "list", "--address", svc.address, "--user", "bob", "-o", "json", "--all")
    assert json.loads(out) == paged and paged["total_size"] == 1 and paged["next_page_token"] == ""
    code, out, _ = run(capsys, "anomalies", "list", "--address", svc.address, "-o", "ndjson")
    assert sorted(json.loads(line)["user"] for line in out.splitlines()) == ["alice", "bob"]
    code, out, _ = run(capsys, "anomalies", "get", alice_id, "--address", svc.address)
    assert code == 0 and "12 failed logins" in out and "evidence.event_ids" in out
    code, out, _ = run(capsys, "anomalies", "ack", "--address", svc.address, "-q", "user:alice", "--comment", "ok", "--yes")
    assert code == 0 and "1 anomalies updated" in out and "alice" in out
    code, out, _ = run(capsys, "anomalies", "export", "--address", svc.address)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["id"]: r["status"] for r in rows} == {alice_id: "acknowledged", bob_id: "new"}
    code, _out, err = run(capsys, "anomalies", "ack", "--address", svc.address)
    assert code == 2 and "give anomaly ids" in err
    code, _out, err = run(capsys, "anomalies", "list", "--address", svc.address, "-q", "colour:red")
    assert code == 1 and err.strip().startswith("ueba: INVALID_ARGUMENT: filter.query: unknown field 'colour'")


def test_anomaly_events_as_a_table_and_in_every_format(svc, store, capsys):
    at = NOW - timedelta(hours=1)
    cited = [store.event("dana", at - timedelta(minutes=m), outcome="failure", source_ip="203.0.113.5",
                         destination_host="dc01", action="4625", country="FR") for m in (9, 8, 7)]
    finding = store.anomaly("dana", 70, time=at, evidence={"event_ids": cited})
    code, out, _ = run(capsys, "anomalies", "events", finding, "--address", svc.address)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["TIME", "USER", "SOURCE", "HOST", "ACTION", "OUTCOME", "COUNTRY"]
    assert len(lines) == 4 and all("203.0.113.5  dc01  logon (4625)  failure  FR" in line for line in lines[1:])
    code, out, _ = run(capsys, "anomalies", "events", finding, "--address", svc.address, "-o", "json", "--limit", "2")
    body = json.loads(out)
    assert [e["event_id"] for e in body["events"]] == cited[:2] and body["next_page_token"] and body["total_size"] is None
    assert body["events"][0]["type"] == "logon" and body["events"][0]["outcome"] == "failure"
    code, out, _ = run(capsys, "anomalies", "events", finding, "--address", svc.address, "-o", "json", "--limit", "2", "--all")
    body = json.loads(out)
    assert [e["event_id"] for e in body["events"]] == cited and body["total_size"] == 3
    code, out, _ = run(capsys, "anomalies", "events", finding, "--address", svc.address, "-o", "ndjson")
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == cited
    code, out, _ = run(capsys, "anomalies", "events", finding, "--address", svc.address, "-o", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0][:4] == ["time", "user", "type", "outcome"] and [r[-1] for r in rows[1:]] == cited
    code, _out, err = run(capsys, "anomalies", "events", "00000000-0000-0000-0000-000000000000", "--address", svc.address)
    assert code != 0 and "not found" in err


def test_users_and_timelines(svc, data, capsys):
    _ids, day = data
    code, out, _ = run(capsys, "users", "list", "--address", svc.address, "-o", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["user"] for r in rows] == ["alice", "bob"] and rows[0]["department"] == "Finance"
    code, out, _ = run(capsys, "users", "get", "alice", "--address", svc.address)
    assert code == 0 and "alice: risk 92 (critical)" in out
    code, out, _ = run(capsys, "users", "scores", "--address", svc.address, "-o", "json")
    assert json.loads(out)["scores"][0]["anomaly_score"] == 55.0
    code, out, _ = run(capsys, "users", "timeline", "alice", "--day", day.date().isoformat(), "--address", svc.address)
    assert code == 0 and "04:00" in out and "failures 9, usually 1" in out and "*" in out
    assert "authentication  " in out and "█" in out  # the heat map's row for the model
    code, out, _ = run(capsys, "risk-timeline", "--since", "1d", "--address", svc.address, "-o", "csv")
    assert code == 0 and sum(int(r["anomalies"]) for r in csv.DictReader(io.StringIO(out))) == 2
    code, out, _ = run(capsys, "ignore", "add", "bob", "--reason", "test account", "--address", svc.address)
    assert code == 0 and "test account" in out
    code, out, _ = run(capsys, "ignore", "list", "--address", svc.address, "-o", "json")
    assert [u["user"] for u in json.loads(out)["users"]] == ["bob"]
    code, out, _ = run(capsys, "ignore", "remove", "bob", "--address", svc.address)
    assert code == 0 and "removed" in out
    code, _out, err = run(capsys, "users", "get", "nobody", "--address", svc.address)
    assert code == 1 and "NOT_FOUND" in err


def test_print_summary_for_ueba_up(svc, data):
    out = io.StringIO()
    assert print_summary(svc.address, out)
    assert "Riskiest users:" in out.getvalue() and "alice" in out.getvalue()


def free_port_address() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there


def test_unreachable_service_is_one_line_and_non_zero():
    address = free_port_address()
    proc = subprocess.run([sys.executable, "-m", "ueba.cli.main", "summary", "--address", address],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"cannot reach the query service at {address}" in proc.stderr
    out = io.StringIO()
    assert not print_summary(address, out) and "cannot reach" in out.getvalue()


HOSTILE = {
    "=hyperlink(\"http://evil.example/x\",\"open me\")": "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07 then \x1b[2J\x1b[31mred",
    "+cmd|' /c calc'!a0": "=1+2 and a very long description that goes on and on about failed logons from a far country",
    "-2+3": "@sum(1) \u202etxt.exe 東京からのログオン失敗 with wide characters",
}


@pytest.fixture
def hostile(store):
    ids = []
    for i, (user, description) in enumerate(HOSTILE.items()):
        store.user(user, "Finance\x1b[0m")
        ids.append(store.anomaly(user, 40 + 20 * i, description=description,
                                 evidence={"note": "\x1b[41mevidence\x1b[0m", "host": "h" * 120}))
        store.user_score(user, (NOW - timedelta(days=2)).date(), 30.0 + i)
        store.event(user, NOW - timedelta(minutes=65), outcome="failure", source_host="ws-\x1b[31m" + "x" * 90,
                    destination_host=description, action="\u202e4625", country="\x1b]8;;DE")
    day = NOW.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    first = next(iter(HOSTILE))
    store.event_score(first, day + timedelta(hours=3), "authentication", 91,
                      [{"name": "failures\x1b[1m", "expected": 2, "observed": 41, "share": 1}])
    return ids, first, day


def table_commands(address, ids, user, day):
    common = ["--address", address]
    return [
        ["summary", *common],
        ["anomalies", "list", *common],
        ["anomalies", "list", "--all", *common],
        ["anomalies", "get", ids[0], *common],
        ["anomalies", "events", ids[0], *common],
        ["users", "list", *common],
        ["users", "get", user, *common],
        ["users", "scores", *common],
        ["users", "timeline", user, "--day", day.date().isoformat(), *common],
        ["risk-timeline", "--since", "1d", *common],
        ["ignore", "add", user, "--reason", "\x1b[5mblink", *common],
        ["ignore", "list", *common],
        ["ignore", "remove", user, *common],
    ]


@pytest.mark.parametrize("columns", [80, 120])
def test_every_table_fits_the_terminal_and_prints_no_control_characters(svc, hostile, capsys, monkeypatch, columns):
    from ueba.cli.output import display_width

    ids, user, day = hostile
    monkeypatch.setenv("COLUMNS", str(columns))
    for argv in table_commands(svc.address, ids, user, day):
        code, out, err = run(capsys, *argv)
        assert code == 0, (argv, err)
        too_long = [line for line in out.splitlines() if display_width(line) > columns]
        assert not too_long, (argv, too_long)
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, argv
    code, out, _ = run(capsys, "anomalies", "get", ids[0], "--address", svc.address)
    assert "\\x1b]8;;http://evil.example\\x07click" in out  # shown as text, not obeyed
    code, out, _ = run(capsys, "anomalies", "events", ids[0], "--address", svc.address)
    assert "failure" in out and "\\x1b" in out  # the hostile event was in the table, escaped


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(svc, hostile, capsys):
    outs = []
    for argv in (["anomalies", "list"], ["users", "list"], ["users", "get", hostile[1]]):
        code, out, _ = run(capsys, *argv, "--address", svc.address, "-o", "csv")
        outs.append(out)
        assert code == 0
        cells = [cell for row in csv.reader(io.StringIO(out)) for cell in row]
        assert cells, argv
        dangerous = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
        assert not dangerous, (argv, dangerous)
        assert not any("\x1b" in c for c in cells), argv
    assert "'=hyperlink(" in outs[0] and "'=1+2" in outs[0] and "'+cmd|" in outs[1] and "'-2+3" in outs[1]


def test_json_keeps_values_as_sent_but_typed(svc, hostile, capsys):
    code, out, _ = run(capsys, "anomalies", "list", "--address", svc.address, "-o", "json")
    body = json.loads(out)
    assert set(a["user"] for a in body["anomalies"]) == set(HOSTILE)  # JSON escapes, so the values stay exact
    assert {a["description"] for a in body["anomalies"]} == set(HOSTILE.values())
    assert all(isinstance(a["risk_score"], int) and a["risk_level"] in ("medium", "high", "critical") for a in body["anomalies"])
