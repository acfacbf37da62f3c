"""`ueba up`, what `make run` calls: the whole system as processes, a simulated load, the summary.

Runs the real command (four service processes, the simulator, the query API) against a
database of its own and checks what a newcomer reads at the end of start-up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ueba.store.databases import drop_database, new_database
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture
def empty_database_url(server_url):
    # Unmigrated on purpose: `ueba up` applies the migrations itself.
    name, url = new_database(server_url, "ueba_up")
    yield url
    drop_database(server_url, name)


def test_up_loads_simulated_activity_and_prints_what_it_found(empty_database_url):
    env = {**os.environ, "DATABASE_URL": empty_database_url}
    proc = subprocess.run(
        [sys.executable, "-m", "ueba.cli.main", "up", "--users", "20", "--days", "9", "--exit-after-load"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    sent, stored = map(lambda s: int(s.replace(",", "")),
                       re.search(r"ingest: ([\d,]+) sent, ([\d,]+) stored, 0 duplicates, 0 rejected", out).groups())
    assert sent == stored > 1000
    assert re.search(r"scorer: 20 users, [\d,]+ hourly model scores", out)
    anomalies = int(re.search(r"Anomalies .*?: ([\d,]+) \(", out).group(1).replace(",", ""))
    assert anomalies > 0, "the simulated attacks raised nothing"
    assert "Riskiest users:" in out
    for name in ("ingest", "profiles", "scorer", "query"):
        assert re.search(rf"^\s+{name}\s+\S+:\d+$", out, re.M), f"no address printed for {name}"
