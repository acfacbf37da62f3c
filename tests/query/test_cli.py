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
    code, out, _ = run(capsys, "summary", "--address", svc.address, "--output", "json")
    body = json.loads(out)
    assert body["total_anomalies"] == "2" and body["riskiest_users"][0]["user"] == "alice"
    code, out, _ = run(capsys, "summary", "--address", svc.address, "-o", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["section", "key", "value"] and ["user_risk", "alice", "92"] in rows


def test_anomalies_commands(svc, data, capsys):
    (alice_id, bob_id), _day = data
    code, out, _ = run(capsys, "anomalies", "list", "--address", svc.address, "-q", "risk>=high")
    assert code == 0 and alice_id in out and bob_id not in out and "1 shown of 1" in out
    code, out, _ = run(capsys, "anomalies", "list", "--address", svc.address, "--user", "bob", "-o", "json")
    assert [a["id"] for a in json.loads(out)["anomalies"]] == [bob_id]
    code, out, _ = run(capsys, "anomalies", "get", alice_id, "--address", svc.address)
    assert code == 0 and "12 failed logins" in out and "event_ids" in out
    code, out, _ = run(capsys, "anomalies", "ack", "--address", svc.address, "-q", "user:alice", "--comment", "ok")
    assert code == 0 and "1 anomalies updated" in out and "alice" in out
    code, out, _ = run(capsys, "anomalies", "export", "--address", svc.address)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["id"]: r["status"] for r in rows} == {alice_id: "acknowledged", bob_id: "new"}
    code, _out, err = run(capsys, "anomalies", "ack", "--address", svc.address)
    assert code == 2 and "give anomaly ids" in err
    code, _out, err = run(capsys, "anomalies", "list", "--address", svc.address, "-q", "colour:red")
    assert code == 1 and err.strip().startswith("ueba: INVALID_ARGUMENT: filter.query: unknown field 'colour'")


def test_users_and_timelines(svc, data, capsys):
    _ids, day = data
    code, out, _ = run(capsys, "users", "list", "--address", svc.address, "-o", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["user"] for r in rows] == ["alice", "bob"] and rows[0]["department"] == "Finance"
    code, out, _ = run(capsys, "users", "get", "alice", "--address", svc.address)
    assert code == 0 and "alice: risk 92 (critical)" in out
    code, out, _ = run(capsys, "users", "scores", "--address", svc.address, "-o", "json")
    assert json.loads(out)[0]["anomaly_score"] == 55.0
    code, out, _ = run(capsys, "users", "timeline", "alice", "--day", day.date().isoformat(), "--address", svc.address)
    assert code == 0 and "04:00" in out and "failures 9 vs 1" in out and "*" in out
    code, out, _ = run(capsys, "risk-timeline", "--since", "1d", "--address", svc.address, "-o", "csv")
    assert code == 0 and sum(int(r["anomalies"]) for r in csv.DictReader(io.StringIO(out))) == 2
    code, out, _ = run(capsys, "ignore", "add", "bob", "--reason", "test account", "--address", svc.address)
    assert code == 0 and "test account" in out
    code, out, _ = run(capsys, "ignore", "list", "--address", svc.address, "-o", "json")
    assert [u["user"] for u in json.loads(out)] == ["bob"]
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
