"""UEBA_QUERY_WORKERS > 1: server processes sharing one port under a supervisor that drains them on SIGTERM."""

import os
import signal
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from services.query.settings import QuerySettings
from services.query.workers import reserve_port
from ueba.launcher import start_service
from ueba.settings import SettingsError
from ueba.v1 import query_pb2, query_pb2_grpc


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def listening_inodes(port: int) -> set[str]:
    """Socket inodes of the TCP sockets listening on `port` (state 0A in /proc/net/tcp*)."""
    found = set()
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                found.add(fields[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[len("socket:["):-1])
    return out


def wait_for(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def start_workers(database_url, tenant, **env):
    return start_service("query", env={
        "DATABASE_URL": database_url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "0", "UEBA_TENANT": tenant,
        "UEBA_QUERY_WORKERS": "2", **env,
    })


def test_worker_settings_are_checked():
    with pytest.raises(SettingsError, match="UEBA_QUERY_WORKERS"):
        QuerySettings.from_env({"UEBA_QUERY_WORKERS": "0"})
    with pytest.raises(SettingsError, match="UEBA_QUERY_THREADS"):
        QuerySettings.from_env({"UEBA_QUERY_THREADS": "0"})


def test_reserved_port_can_be_shared():
    held, port = reserve_port("127.0.0.1")
    try:
        server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(1))
        assert server.add_insecure_port(f"127.0.0.1:{port}") == port  # gRPC sets SO_REUSEPORT too
        server.stop(0)
    finally:
        held.close()


@pytest.mark.e2e
def test_workers_share_the_port_serve_and_drain(database_url, store, tenant, engine):
    anomaly_id = store.anomaly("alice", 93)
    proc = start_workers(database_url, tenant)
    try:
        workers = children(proc.process.pid)
        assert len(workers) == 2
        # Each worker holds its own listening socket on the one port.
        listening = listening_inodes(proc.port)
        assert len(listening) == 2
        assert all(len(socket_inodes(w) & listening) == 1 for w in workers)
        for _ in range(12):  # separate connections, spread over both workers by the kernel
            with grpc.insecure_channel(proc.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                s = query_pb2_grpc.QueryServiceStub(channel).GetSummary(query_pb2.GetSummaryRequest(), timeout=10)
                assert s.total_anomalies == 1 and s.riskiest_users[0].user == "alice"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=10).read().decode()
        line = next(l for l in metrics.splitlines()
                    if l.startswith("ueba_grpc_requests_total{") and "GetSummary" in l and 'code="OK"' in l)
        assert float(line.rsplit(" ", 1)[1]) == 12.0  # the sum over both workers

        # An in-flight call survives SIGTERM: a review waits on a row lock the test holds.
        with engine.connect() as blocker, grpc.insecure_channel(proc.address) as channel:
            lock = blocker.begin()
            blocker.execute(text("SELECT 1 FROM anomalies WHERE id = :id FOR UPDATE"), {"id": anomaly_id})
            call = query_pb2_grpc.QueryServiceStub(channel).ReviewAnomalies.future(query_pb2.ReviewAnomaliesRequest(
                action=query_pb2.REVIEW_ACTION_ACKNOWLEDGE, ids=[anomaly_id]), timeout=30)

            def review_waits():  # asked on another connection: a transaction sees pg_stat_activity as it first read it
                with engine.connect() as conn:
                    return conn.execute(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'ueba-query'"
                    )).scalar_one() > 0

            assert wait_for(review_waits)
            proc.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert not call.done() and proc.process.poll() is None  # draining, not dropped
            lock.rollback()
            assert call.result().updated == 1
        assert proc.process.wait(30) == 0
        assert wait_for(lambda: not any(Path(f"/proc/{w}").exists() for w in workers))
    finally:
        proc.stop()


@pytest.mark.e2e
def test_a_dead_worker_stops_the_service(database_url, tenant):
    proc = start_workers(database_url, tenant, UEBA_METRICS_PORT="-1")
    try:
        first, second = children(proc.process.pid)
        os.kill(first, signal.SIGKILL)
        assert proc.process.wait(30) == 1  # the orchestrator restarts the whole service
        assert wait_for(lambda: not Path(f"/proc/{second}").exists() or
                        Path(f"/proc/{second}/stat").read_text().split()[2] == "Z")
    finally:
        proc.stop()
