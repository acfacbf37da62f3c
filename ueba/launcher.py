"""Starts service processes and waits until they listen.

Used by `ueba up`, the end-to-end tests and the benchmarks, so that all of
them run the services exactly as a container does: `python -m services.NAME`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

READY = re.compile(r"^READY (\S+) port=(\d+) metrics_port=(\S+)")
SERVICES = ("ingest", "profiles", "scorer", "query", "delivery")


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen
    port: int
    metrics_port: int | None
    log_path: Path | None = None
    _pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def start_service(
    name: str,
    env: dict[str, str],
    log_path: Path | None = None,
    timeout: float = 60.0,
    args: list[str] | None = None,
) -> ServiceProcess:
    """Starts `python -m services.NAME` and returns once it prints its READY line.

    stderr (the JSON logs) goes to log_path, or is inherited when None.
    """
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    stderr = open(log_path, "ab") if log_path else None
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}", *(args or [])],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            code = proc.wait()
            raise RuntimeError(f"service {name} exited with {code} before it was ready" + (f"; see {log_path}" if log_path else ""))
        m = READY.match(line)
        if m:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"service {name} not ready after {timeout}s")

    def pump():  # keep reading so the child never blocks on a full pipe
        for _ in proc.stdout:
            pass

    pump_thread = threading.Thread(target=pump, daemon=True)
    pump_thread.start()
    metrics = None if m.group(3) == "None" else int(m.group(3))
    return ServiceProcess(name, proc, int(m.group(2)), metrics, log_path, pump_thread)
