"""`ueba profiles ...` against a real server."""

from __future__ import annotations

import json
import uuid

import pytest

from services.profiles.server import create_server
from services.profiles.settings import ProfilesSettings
from tests.profiles.dbutil import insert_events
from tests.profiles.factory import event
from ueba.cli.main import main
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
    assert "count: 4" in shown and "applications: VPN" in shown
    updated = json.loads(run(capsys, addr, "--output", "json", "update", pid, "--param", "interval_seconds=120"))
    assert updated["parameters"]["interval_seconds"] == 120 and updated["parameters"]["count"] == 4
    assert "enabled:      no" in run(capsys, addr, "disable", pid)
    assert "enabled:      yes" in run(capsys, addr, "enable", pid)

    insert_events(own_database_url, [event("sam", "logon", i, outcome="failure", application="vpn") for i in range(4)], tenant=tenant)
    start = event(at=-60).time.isoformat()
    out = run(capsys, addr, "preview", pid, "--start", start, "--end", event(at=3600).time.isoformat())
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
