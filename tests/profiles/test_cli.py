"""`ueba profiles ...` against a real server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import pytest

from services.profiles.server import create_server
from services.profiles.settings import ProfilesSettings
from tests.profiles.dbutil import insert_events
from tests.profiles.factory import event
from ueba.cli.main import main
from ueba.cli.profiles import KINDS
from ueba.db import create_db_engine


@pytest.fixture
def address(own_database_url):
    tenant = f"cli{uuid.uuid4().hex[:8]}"
    settings = ProfilesSettings.from_env({}, database_url=own_database_url, tenant=tenant, evaluate=False, metrics_port=-1)
    engine = create_db_engine(own_database_url, pool_size=2)
    server, port = create_server(settings, engine)
    server.start()
    yield f"127.0.0.1:{port}", tenant
    server.stop(0).wait()
    engine.dispose()


def run(capsys, address, *argv) -> str:
    code = main(["profiles", "--address", address, *argv])
    assert code == 0
    return capsys.readouterr().out


def test_profile_lifecycle_from_the_command_line(capsys, address, own_database_url):
    addr, tenant = address
    table = run(capsys, addr, "list")
    assert "Impossible travel" in table and "proximity" in table
    created = json.loads(run(capsys, addr, "--output", "json", "create", "--name", "VPN brute force", "--kind",
                             "failed_logins", "--risk-score", "70", "--param", "count=4", "--app", "VPN"))
    pid = created["id"]
    assert created["parameters"]["count"] == 4 and created["applications"] == ["VPN"]
    shown = run(capsys, addr, "get", pid)
    assert re.search(r"^  count +4$", shown, re.M) and re.search(r"^applications +VPN$", shown, re.M)
    assert run(capsys, addr, "get", "vpn brute force") == shown  # by name as well as by id
    updated = json.loads(run(capsys, addr, "--output", "json", "update", pid, "--param", "interval_seconds=120"))
    assert updated["parameters"]["interval_seconds"] == 120 and updated["parameters"]["count"] == 4
    assert re.search(r"^enabled +no$", run(capsys, addr, "disable", pid), re.M)
    assert re.search(r"^enabled +yes$", run(capsys, addr, "enable", "VPN brute force"), re.M)

    insert_events(own_database_url, [event("sam", "logon", i, outcome="failure", application="vpn") for i in range(4)], tenant=tenant)
    start = event(at=-60).time.isoformat()
    out = run(capsys, addr, "preview", pid, "--from", start, "--to", event(at=3600).time.isoformat())
    assert "4 events examined, 1 anomalies" in out and "sam" in out
    assert "deleted" in run(capsys, addr, "delete", pid)
    with pytest.raises(SystemExit) as exit_:
        main(["profiles", "--address", addr, "get", pid])
    assert exit_.value.code == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_bad_parameter_is_reported(capsys, address):
    addr, _ = address
    with pytest.raises(SystemExit):
        main(["profiles", "--address", addr, "create", "--name", "x", "--kind", "bulk_delete", "--risk-score", "5",
              "--param", "file_count=-3"])
    assert "INVALID_ARGUMENT: parameters.file_count" in capsys.readouterr().err


@pytest.mark.parametrize("columns", [80, 120])
def test_profile_tables_fit_the_terminal(capsys, address, monkeypatch, columns):
    addr, _ = address
    monkeypatch.setenv("COLUMNS", str(columns))
    for argv in (["list"], ["get", "Impossible travel"], ["risk", "sam"]):
        out = run(capsys, addr, *argv)
        assert out and all(len(line) <= columns for line in out.splitlines()), (argv, out)
    assert json.loads(run(capsys, addr, "list", "-o", "json"))["profiles"][0]["kind"] in KINDS
    first = json.loads(run(capsys, addr, "list", "--output", "ndjson").splitlines()[0])
    assert set(first) >= {"id", "name", "kind", "enabled", "risk_score", "parameters"}


def test_a_name_that_matches_no_profile_lists_the_names(capsys, address):
    addr, _ = address
    with pytest.raises(SystemExit) as exit_:
        main(["profiles", "--address", addr, "get", "No such profile"])
    assert exit_.value.code == 2 and "'Impossible travel'" in capsys.readouterr().err


def test_a_reader_that_goes_away_ends_the_command_quietly(address):
    addr, _ = address
    # `true` exits before the command writes, so every write meets a closed pipe, as `| head -2` does.
    for argv in ("list", "list -o json"):
        proc = subprocess.run(f"{sys.executable} -m ueba.cli.main profiles --address {addr} {argv} | true; "
                              f"{sys.executable} -m ueba.cli.main profiles --address {addr} {argv} | head -2 >/dev/null",
                              shell=True, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
