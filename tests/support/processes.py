"""Service processes started as a container runs them, and always stopped after the test."""

from __future__ import annotations

from pathlib import Path

from ueba.launcher import ServiceProcess, start_service


class ServiceProcesses:
    """Starts `python -m services.NAME` processes; `stop_all()` ends those still running."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[ServiceProcess] = []

    def start(self, name: str, env: dict[str, str], timeout: float = 60.0) -> ServiceProcess:
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        process = start_service(name, {"UEBA_METRICS_PORT": "-1", **env}, log_path=log_path, timeout=timeout)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.kill()
