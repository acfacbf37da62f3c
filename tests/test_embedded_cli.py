"""A command on the embedded Postgres, as a newcomer runs it: no warnings about the runtime directory."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def test_no_runtime_dir_warning_without_xdg_runtime_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "DATABASE_URL")}
    env["UEBA_DATA_DIR"] = str(tmp_path)
    try:
        proc = subprocess.run([sys.executable, "-m", "ueba.cli.main", "migrate"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "migrations applied" in proc.stdout
        assert "Warning" not in proc.stderr, proc.stderr
    finally:
        pg = tmp_path / "pg"
        if (pg / "postmaster.pid").exists():  # the embedded server outlives the command: stop it
            subprocess.run([sys.executable, "-c", "import pgserver, sys; pgserver.get_server(sys.argv[1], cleanup_mode='stop').cleanup()",
                            str(pg)], env=env, timeout=120)
