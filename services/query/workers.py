"""Several query server processes sharing one port with SO_REUSEPORT (UEBA_QUERY_WORKERS > 1; README: processes)."""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from services.query.settings import QuerySettings
from ueba.bootstrap import resolve_database_url
from ueba.launcher import ServiceProcess, start_service
from ueba.server import metrics_host

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


def split_listen(listen: str) -> tuple[str, int]:
    host, _sep, port = listen.rpartition(":")
    return host, int(port)


def reserve_port(host: str) -> tuple[socket.socket, int]:
    """A socket bound to a free port of `host` with SO_REUSEPORT, so that the workers can bind it too."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((bare, 0))
    return sock, sock.getsockname()[1]


def _serve_metrics(host: str, port: int, folder: str) -> int:
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    httpd, _thread = start_http_server(port, registry=registry)
    return httpd.server_port


def _stop_all(workers: list[ServiceProcess], timeout: float) -> list[int]:
    """SIGTERM to every worker at once (each drains), then their exit codes; a worker still running after `timeout` is killed."""
    for w in workers:
        if w.process.poll() is None:
            w.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    codes = []
    for w in workers:
        try:
            codes.append(w.process.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            w.process.kill()
            codes.append(w.process.wait())
    return codes


def supervise(settings: QuerySettings) -> int:
    """Runs settings.workers server processes on one port until SIGTERM/SIGINT; the process exit code."""
    host, port = split_listen(settings.listen)
    reservation = None
    if port == 0:
        reservation, port = reserve_port(host)
    env = {
        "DATABASE_URL": resolve_database_url(settings),
        "UEBA_LISTEN": f"{host}:{port}",
        "UEBA_QUERY_WORKERS": "1",
        "UEBA_METRICS_PORT": "-1",
    }
    metrics_dir = None
    metrics_port = None
    if settings.metrics_port >= 0:
        metrics_dir = tempfile.mkdtemp(prefix="ueba-query-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        metrics_port = _serve_metrics(metrics_host(settings), settings.metrics_port, metrics_dir)

    stopping = threading.Event()

    def request_stop(signum, _frame):
        log.info("stopping workers", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stop_timeout = settings.drain_seconds + 15
    workers: list[ServiceProcess] = []
    try:
        def start(index: int) -> ServiceProcess:
            worker_env = {**env, "UEBA_QUERY_MAINTENANCE": "true" if index == 0 and settings.maintenance else "false"}
            return start_service("query", worker_env, timeout=120)

        with ThreadPoolExecutor(settings.workers) as pool:
            futures = [pool.submit(start, i) for i in range(settings.workers)]
            failure = None
            for f in futures:
                try:
                    workers.append(f.result())
                except Exception as exc:  # the others are stopped below
                    failure = failure or exc
        if failure is not None:
            log.error("a worker did not start", exc_info=failure)
            _stop_all(workers, stop_timeout)
            return 1
        log.info("listening", extra={"port": port, "metrics_port": metrics_port, "workers": len(workers)})
        print(f"READY query port={port} metrics_port={metrics_port}", flush=True)
        while not stopping.wait(POLL_SECONDS):
            dead = [w for w in workers if w.process.poll() is not None]
            if dead:
                log.error("a worker exited; stopping the others", extra={"pid": dead[0].process.pid, "code": dead[0].process.returncode})
                _stop_all(workers, stop_timeout)
                return 1
        codes = _stop_all(workers, stop_timeout)
        log.info("stopped", extra={"codes": codes})
        return 0 if all(c == 0 for c in codes) else 1
    finally:
        if reservation is not None:
            reservation.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
