"""Two ingest processes behind one address, as replicas behind a Kubernetes Service.

The second process binds the first one's port: gRPC sets SO_REUSEPORT on its
listening sockets, so the kernel hands each new connection to one of the two
(as services/query/workers.py does for the query workers). Connections, not
calls, are spread, which is exactly what a Service's L4 balancing does and why
the servers need a maximum connection age.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ueba.launcher import ServiceProcess, start_service

from .metrics import sample

STREAM_EVENTS = "/ueba.v1.IngestService/StreamEvents"


def ingest_env(database_url: str, max_age_seconds: int, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "UEBA_LISTEN": "127.0.0.1:0",
        "UEBA_METRICS_PORT": "0",
        "UEBA_MAX_CONNECTION_AGE_SECONDS": str(max_age_seconds),
        "UEBA_MAX_PAST_DAYS": "0",
        "UEBA_RETENTION_DAYS": "0",
        **extra,
    }


@contextmanager
def two_ingest_processes(env: dict[str, str], log_dir: Path) -> Iterator[list[ServiceProcess]]:
    first = start_service("ingest", env, log_path=log_dir / "ingest-0.log")
    pair = [first]
    try:
        pair.append(start_service("ingest", {**env, "UEBA_LISTEN": first.address}, log_path=log_dir / "ingest-1.log"))
        assert pair[1].port == first.port
        yield pair
    finally:
        for process in pair:
            process.stop()


def streams_served(process: ServiceProcess) -> int:
    """StreamEvents calls the process has finished, however they ended."""
    return int(sample(process, "ueba_grpc_requests_total", method=STREAM_EVENTS))


def events_counted(process: ServiceProcess, result: str) -> int:
    return int(sample(process, "ueba_ingest_events_total", result=result))
