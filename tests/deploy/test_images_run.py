"""Each image's exact command line, run here without Docker, becomes healthy against a real Postgres.

The command and environment come from the Dockerfile (ENTRYPOINT/CMD and the
inherited ENV of the service's target) and the migration Job from the chart's
render; only the addresses change (free local ports) and DATABASE_URL is added.
What the images leave out (pgserver, grpcio-tools, setuptools, pip) is hidden
from the processes. The first admin token is made with the README's one-liner and
the `helm test` Pod's commands run against the query image.
"""

from __future__ import annotations

import os
import re
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
from .tools import DEPLOY, SERVICES, by_kind, helm_template, objects

SERVICE_NAMES = {
    "ingest": "ueba.v1.IngestService",
    "profiles": "ueba.v1.ProfileService",
    "scorer": "ueba.v1.ScorerService",
    "delivery": "ueba.v1.DeliveryService",
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


# Installed here for development and builds, removed from the images.
NOT_IN_IMAGES = ("pgserver", "grpc_tools", "setuptools", "pkg_resources", "pip")


@pytest.fixture(scope="module")
def image_site(tmp_path_factory) -> str:
    """A PYTHONPATH entry under which importing what the images leave out fails, as in the images."""
    folder = tmp_path_factory.mktemp("image-site")
    for package in NOT_IN_IMAGES:
        (folder / package).mkdir()
        (folder / package / "__init__.py").write_text(f'raise ImportError("{package} is not in the container images")\n')
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
def migrated_by_job(server_url, image_site, tmp_path_factory):
    """An empty database migrated by running the chart's migration Job command."""
    name, url = new_database(server_url, "ueba_deploy")
    (job,) = by_kind(objects(helm_template()), "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["DATABASE_URL"] = url
    tmp = tmp_path_factory.mktemp("migrate")
    result = subprocess.run(
        local_argv(container["command"] + container.get("args", [])),
        env=container_env(env, tmp, image_site),
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
def test_image_command_becomes_healthy(name, migrated_by_job, image_site, tmp_path):
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
            env=container_env(env, tmp_path, image_site),
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


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode} before it answered:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.read()
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer after {timeout}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)


@pytest.mark.e2e
def test_console_image_answers_its_probe_with_the_chart_env(image_site, tmp_path):
    docs = objects(helm_template())
    (console,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "ueba-console"]
    container = console["spec"]["template"]["spec"]["containers"][0]
    env = {**image_env("console"), **chart_env(container)}
    assert env["UEBA_LISTEN"] == "0.0.0.0:8080" and "DATABASE_URL" not in env
    http_port, metrics_port = free_port(), free_port()
    # Loopback here, so no plaintext waiver is needed; the backends are only called per request.
    env.update({"UEBA_LISTEN": f"127.0.0.1:{http_port}", "UEBA_METRICS_PORT": str(metrics_port)})
    env.pop("UEBA_PLAINTEXT")
    log = tmp_path / "console.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(local_argv(image_command("console")), env=container_env(env, tmp_path, image_site),
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        probe = container["readinessProbe"]["httpGet"]
        assert b'"ok"' in wait_http(f"http://127.0.0.1:{http_port}{probe['path']}", process, log)
        # The pages' scripts are installed, as the image's build stage installs them.
        page = wait_http(f"http://127.0.0.1:{http_port}/", process, log)
        assert b"vendor/" in page
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
            assert b"python_info" in reply.read()
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: the kubelet sees 143, as it expects.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()[-3000:]
        assert "Application shutdown complete" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def chart_env(container: dict) -> dict[str, str]:
    """A rendered container's plain env values (Secret references are the test's to fill)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def readme_token_pipeline() -> str:
    """The README's first-token one-liner as it runs inside the query pod: the command after
    `kubectl exec ... --` and the filters, without the kubectl parts."""
    readme = (DEPLOY / "k8s" / "README.md").read_text()
    section = readme[readme.index("## First admin token"):]
    block = section[section.index("```sh\n") + 6:section.index("\n```", section.index("```sh\n"))]
    stages = [part.strip() for part in block.replace("\\\n", " ").split(" | ")]
    assert stages[0].startswith("kubectl -n ueba exec deploy/ueba-query") and stages[-1].startswith("kubectl -n ueba create secret")
    return " | ".join([stages[0].split(" -- ", 1)[1], *stages[1:-1]])


@pytest.mark.e2e
def test_first_token_and_helm_test_pod_work_against_the_query_image(migrated_by_job, image_site, tmp_path):
    docs = objects(helm_template())
    query = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "ueba-query")["spec"]["template"]["spec"]
    env = {**image_env("query"), **chart_env(query["containers"][0]), "DATABASE_URL": migrated_by_job}
    grpc_port = free_port()
    env.update({"UEBA_LISTEN": f"127.0.0.1:{grpc_port}", "UEBA_METRICS_PORT": "-1"})
    run_env = container_env(env, tmp_path, image_site)

    def run_in_image(argv: list[str], extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(local_argv(argv), env={**run_env, **(extra or {})}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    (init,) = query["initContainers"]
    waited = run_in_image(init["command"])
    assert waited.returncode == 0 and waited.stdout.startswith("schema ready at"), waited.stderr

    made = subprocess.run(["sh", "-c", readme_token_pipeline()], env=run_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    token = made.stdout
    assert made.returncode == 0 and re.fullmatch(r"\S{20,}", token), made.stdout + made.stderr

    log = tmp_path / "query.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(local_argv(image_command("query")), env=run_env, cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_serving(f"127.0.0.1:{grpc_port}", "", process, log)
        (pod,) = by_kind(docs, "Pod")
        (health,) = pod["spec"]["initContainers"]
        (summary,) = pod["spec"]["containers"]
        address = f"127.0.0.1:{grpc_port}"
        health_argv = [*health["command"][:3], address]
        summary_argv = [*summary["command"][:3], address]
        pod_env = chart_env(health)

        missing = run_in_image(health_argv, pod_env)
        assert missing.returncode != 0 and "no admin token in Secret ueba-admin-token" in missing.stderr
        with_token = {**pod_env, "UEBA_TOKEN": token}
        checked = run_in_image(health_argv, with_token)
        assert checked.returncode == 0 and f"{address} SERVING" in checked.stdout, checked.stderr
        answered = run_in_image(summary_argv, with_token)
        assert answered.returncode == 0, answered.stderr
        refused = run_in_image(summary_argv, {**pod_env, "UEBA_TOKEN": "not-a-token"})
        assert refused.returncode != 0 and "UNAUTHENTICATED" in refused.stderr.upper()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
