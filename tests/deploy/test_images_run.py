"""Each image's exact command line, run here without Docker, becomes healthy against a real Postgres.

The command and environment come from the Dockerfile (ENTRYPOINT/CMD and the
inherited ENV of the service's target) and the migration Job from the chart's
render; only the addresses change (free local ports) and DATABASE_URL is added.
pgserver is hidden from the processes, as the images leave it out.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ueba.store.databases import drop_database, new_database
from ueba.db import libpq_url

from .dockerfile_stages import image_command, image_env
from .tools import SERVICES, by_kind, helm_template, objects

SERVICE_NAMES = {
    "ingest": "ueba.v1.IngestService",
    "profiles": "ueba.v1.ProfileService",
    "scorer": "ueba.v1.ScorerService",
    "query": "ueba.v1.QueryService",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_argv(argv: list[str]) -> list[str]:
    """The image's command with its programs resolved in this virtualenv (the image's /opt/ueba/bin)."""
    program = argv[0]
    if program in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    path = Path(sys.executable).parent / program
    assert path.exists(), f"{program} is not installed in the virtualenv"
    return [str(path), *argv[1:]]


@pytest.fixture(scope="module")
def without_pgserver(tmp_path_factory) -> str:
    """A PYTHONPATH entry under which `import pgserver` fails, as in the images."""
    folder = tmp_path_factory.mktemp("image-site")
    (folder / "pgserver").mkdir()
    (folder / "pgserver" / "__init__.py").write_text('raise ImportError("pgserver is not in the container images")\n')
    return str(folder)


def container_env(base: dict[str, str], tmp: Path, pythonpath: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UEBA_") and k != "DATABASE_URL"}
    env.update(base)
    # The image's PATH, HOME and data folder point into the image; here they point at the test's folders.
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    env["HOME"] = str(tmp)
    env["UEBA_DATA_DIR"] = str(tmp / "data")
    env["PYTHONPATH"] = pythonpath
    return env


@pytest.fixture(scope="module")
def migrated_by_job(server_url, without_pgserver, tmp_path_factory):
    """An empty database migrated by running the chart's migration Job command."""
    name, url = new_database(server_url, "ueba_deploy")
    (job,) = by_kind(objects(helm_template()), "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["DATABASE_URL"] = url
    tmp = tmp_path_factory.mktemp("migrate")
    result = subprocess.run(
        local_argv(container["command"] + container.get("args", [])),
        env=container_env(env, tmp, without_pgserver),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] >= 1
    yield url
    drop_database(server_url, name)


def wait_serving(address: str, service: str, process: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                pytest.fail(f"exited with {process.returncode} before it was healthy:\n{log.read_text()[-3000:]}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{address} not SERVING after {timeout}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)


@pytest.mark.e2e
@pytest.mark.parametrize("name", SERVICES)
def test_image_command_becomes_healthy(name, migrated_by_job, without_pgserver, tmp_path):
    env = image_env(name)
    assert env["UEBA_LISTEN"].startswith("0.0.0.0:"), "containers listen on every interface"
    grpc_port, metrics_port = free_port(), free_port()
    env["UEBA_LISTEN"] = f"127.0.0.1:{grpc_port}"
    env["UEBA_METRICS_PORT"] = str(metrics_port)
    otlp_port = None
    if env.get("UEBA_OTLP_LISTEN"):
        otlp_port = free_port()
        env["UEBA_OTLP_LISTEN"] = f"127.0.0.1:{otlp_port}"
    env["DATABASE_URL"] = migrated_by_job
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            local_argv(image_command(name)),
            env=container_env(env, tmp_path, without_pgserver),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,  # the scorer's anomaly.log sink writes here
            stderr=stderr,
        )
    try:
        # Both the overall health (what the kubelet's probe asks) and the service's own.
        wait_serving(f"127.0.0.1:{grpc_port}", "", process, log)
        wait_serving(f"127.0.0.1:{grpc_port}", SERVICE_NAMES[name], process, log)
        if otlp_port:
            wait_serving(f"127.0.0.1:{otlp_port}", "", process, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
            assert b"ueba_grpc_requests_total" in reply.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
