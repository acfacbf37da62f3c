"""`ueba up`, what `make run` calls: the whole system as processes, a simulated load, the summary.

Runs the real command (four service processes, the simulator, the query API) against a
database of its own and checks what a newcomer reads at the end of start-up.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from ueba.cli.up import load_simulation
from ueba.db import libpq_url
from ueba.store.databases import drop_database, new_database
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture
def empty_database_url(server_url):
    # Unmigrated on purpose: `ueba up` applies the migrations itself.
    name, url = new_database(server_url, "ueba_up")
    yield url
    drop_database(server_url, name)


def _free_port_base(count: int = 15) -> int:
    """A base with `count` free ports above it (gRPC at +0..4, metrics at +10..14)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count < 65535 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _up(database_url: str, data_dir, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "DATABASE_URL": database_url, "UEBA_DATA_DIR": str(data_dir)}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ueba.cli.main", "up", "--users", "20", "--days", "9", "--exit-after-load", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, time.monotonic() - started


def test_up_loads_simulated_activity_and_prints_what_it_found(empty_database_url, tmp_path):
    base = _free_port_base()
    proc, _ = _up(empty_database_url, tmp_path, "--port-base", str(base))
    out = proc.stdout

    sent, stored = map(lambda s: int(s.replace(",", "")),
                       re.search(r"ingest: ([\d,]+) sent, ([\d,]+) stored, 0 duplicates, 0 rejected", out).groups())
    assert sent == stored > 1000
    assert re.search(r"scorer: 20 users, [\d,]+ hourly model scores", out)
    anomalies = int(re.search(r"Anomalies .*?: ([\d,]+) \(", out).group(1).replace(",", ""))
    assert anomalies > 0, "the simulated attacks raised nothing"
    assert "Riskiest users:" in out
    for i, name in enumerate(("ingest", "profiles", "scorer", "query")):
        assert re.search(rf"^\s+{name}\s+127.0.0.1:{base + i}$", out, re.M), f"{name} not on port {base + i}"

    stored = _stored(empty_database_url)
    # Again: the stored data is served at once, nothing is streamed or scored again; the README's
    # examples run against it.
    env = {**os.environ, "DATABASE_URL": empty_database_url, "UEBA_DATA_DIR": str(tmp_path)}
    started = time.monotonic()
    up = subprocess.Popen([sys.executable, "-m", "ueba.cli.main", "up", "--users", "20", "--days", "9",
                           "--port-base", str(base)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in up.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        took = time.monotonic() - started
        again = "".join(lines)
        assert "resuming on the stored data" in again and "ingest:" not in again, again
        assert "scorer:" not in again and "Riskiest users:" in again
        assert int(re.search(r"Anomalies .*?: ([\d,]+) \(", again).group(1).replace(",", "")) == anomalies
        assert took < 30, f"a second start took {took:.1f} s"
        assert _stored(empty_database_url) == stored, "the second start loaded or scored again"
        assert (tmp_path / "run" / "ingest.log.1").exists()  # the first run's log, kept once
        run_readme_examples(base, tmp_path)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
    assert up.returncode == 0


def _stored(database_url: str) -> tuple[int, int, int]:
    """Events, scoring runs and event scores: what a second start must leave as they are."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM scoring_runs),"
                            " (SELECT count(*) FROM event_scores)").fetchone()


def test_a_load_on_another_day_stores_the_same_month_once(fresh_database_url, service_processes, capsys):
    ingest = service_processes.start("ingest", {"DATABASE_URL": fresh_database_url, "UEBA_LISTEN": "127.0.0.1:0",
                                                "UEBA_TENANT": "default"})
    today = datetime.now(timezone.utc)
    first = load_simulation(ingest.address, fresh_database_url, "default", 6, 3, 4, today=today - timedelta(days=1))
    sent = int(re.search(r"ingest: ([\d,]+) sent, \1 stored, 0 duplicates", capsys.readouterr().out).group(1).replace(",", ""))

    again = load_simulation(ingest.address, fresh_database_url, "default", 6, 3, 4, today=today)
    assert again == first
    assert re.search(rf"ingest: {sent:,} sent, 0 stored, {sent:,} duplicates", capsys.readouterr().out)
    with psycopg.connect(libpq_url(fresh_database_url)) as conn:
        days = conn.execute("SELECT count(*), count(DISTINCT time::date) FROM events").fetchone()
    assert days[0] == sent and days[1] <= 3


def readme_examples() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Then, from another terminal.*?```sh\n(.*?)```", readme, re.S).group(1)
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.startswith(".venv/bin/ueba")]


def _first_id(listing: str, key: str, workdir, env) -> str:
    proc = subprocess.run(f"{sys.executable} -m ueba.cli.main {listing} -o json", shell=True, cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(proc.stdout)[key]
    assert found, f"{listing}: nothing in the demo for the README's example"
    return found[0]["id"]


def run_readme_examples(base: int, workdir) -> None:
    env = {**os.environ, "UEBA_INGEST_ADDRESS": f"127.0.0.1:{base}", "UEBA_PROFILES_ADDRESS": f"127.0.0.1:{base + 1}",
           "UEBA_SCORER_ADDRESS": f"127.0.0.1:{base + 2}", "UEBA_QUERY_ADDRESS": f"127.0.0.1:{base + 3}",
           "COLUMNS": "100"}
    examples = readme_examples()
    assert len(examples) >= 10 and not [e for e in examples if "alice" in e]
    ids: list[str] = []
    for example in examples:
        command = example.replace(".venv/bin/ueba", f"{sys.executable} -m ueba.cli.main")
        if " ID" in command:
            command = command.replace(" ID", f" {ids[0]}")
        # Incidents and cases are named by ids the demo gives: the first of each list stands in.
        for placeholder, listing, key in (("INCIDENT_ID", "incidents list", "incidents"), ("CASE_ID", "cases list", "cases")):
            if placeholder in command:
                command = command.replace(placeholder, _first_id(listing, key, workdir, env))
        proc = subprocess.run(command, shell=True, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (example, proc.stdout[-2000:], proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, example
        if ">" not in example:
            assert proc.stdout.strip(), f"{example} printed nothing"
            assert all(len(line) <= 100 for line in proc.stdout.splitlines()) or "-o json" in example, example
        if "-o json" in example and "anomalies list" in example:
            ids = [a["id"] for a in json.loads(proc.stdout)["anomalies"]]
            assert ids, f"{example}: the README's user has no anomalies in the demo"
    assert (workdir / "anomalies.csv").read_text().startswith("id,")
