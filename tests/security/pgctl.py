"""A private Postgres 15 server in a temporary folder, which a test may stop and start at will.

Never the machine's shared server: restarting that would break every other test and helper.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_port

BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"), Path("/usr/lib/postgresql/17/bin")]


def pg_bin() -> Path | None:
    """The machine's server binaries, else the ones the embedded Postgres (pgserver) ships."""
    for d in BIN_DIRS:
        if (d / "pg_ctl").exists() and (d / "initdb").exists():
            return d
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    from pgserver._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH if (POSTGRES_BIN_PATH / "pg_ctl").exists() else None


# Postgres refuses to run as root; as root the server runs as this user (the one pgserver also uses).
SERVER_USER = "pgserver"


def server_user() -> str | None:
    """The user to run the server as: None for the current one, SERVER_USER (created if need be) when that is root."""
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_user_exists

    ensure_user_exists(SERVER_USER)  # as the embedded Postgres does on its first start as root
    return SERVER_USER


class PrivatePostgres:
    def __init__(self, bin_dir: Path, user: str | None):
        # Not under pytest's tmp_path: that is private to root, and the server may run as another user.
        self.folder = Path(tempfile.mkdtemp(prefix="ueba-pg-"))
        self.user = user
        if user:
            import pwd

            entry = pwd.getpwnam(user)
            os.chmod(self.folder, 0o755)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.data = self.folder / "data"
        self.bin = bin_dir
        self.port = free_port()
        self.log = self.folder / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _command(self, *args: str) -> list[str]:
        # runuser rather than subprocess's user=: with user= Python forks instead of vforking, and a
        # fork while this process's gRPC threads are busy (a client mid-stream) can crash the child.
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return [*prefix, str(self.bin / args[0]), *args[1:]]

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(self._command(*args), check=True, capture_output=True, timeout=timeout)

    def init(self) -> "PrivatePostgres":
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        result = subprocess.run(self._command("pg_ctl", "-D", str(self.data), "status"), capture_output=True)
        return result.returncode == 0

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
