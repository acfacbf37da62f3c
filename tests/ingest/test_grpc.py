"""IngestService over gRPC in this process: unary and streamed batches, back-pressure, the client."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.ingest.server import OTLP_SERVICE_NAME, create_server
from services.ingest.servicer import IngestServicer
from ueba.client.ingest import IngestClient, IngestError
from ueba.server import Registration, build_server
from ueba.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

from tests.support.ports import free_port
from tests.support.waiting import eventually

from .conftest import make_event, settings

START = datetime.now(timezone.utc) - timedelta(hours=2)


def events(n: int, prefix: str = "g") -> list[common_pb2.Event]:
    return [make_event(event_id=f"{prefix}-{i}", user=f"user{i % 7}", time=START + timedelta(seconds=i)) for i in range(n)]


@pytest.fixture
def service(engine, tenant):
    cfg = settings(listen="127.0.0.1:0", metrics_port=-1, tenant=tenant, max_batch_size=500)
    server, port = create_server(cfg, engine)
    server.start()
    yield f"127.0.0.1:{port}", tenant
    server.stop(0).wait()


@pytest.fixture
def stub(service):
    with grpc.insecure_channel(service[0]) as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


def count(pg, tenant: str) -> int:
    return pg.execute("SELECT count(*) FROM events WHERE tenant = %s", (tenant,)).fetchone()[0]


def test_unary_batch_is_acknowledged_after_commit(stub, service, pg):
    ack = stub.IngestEvents(ingest_pb2.EventBatch(batch_id="one", events=events(10)))
    assert (ack.batch_id, ack.accepted, ack.duplicates, ack.rejected) == ("one", 10, 0, 0)
    assert count(pg, service[1]) == 10


@pytest.mark.parametrize("n, message", [(0, "empty"), (501, "at most 500")])
def test_empty_or_oversize_batch_is_invalid_argument(stub, n, message):
    with pytest.raises(grpc.RpcError) as err:
        stub.IngestEvents(ingest_pb2.EventBatch(batch_id="bad", events=events(n)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details() and "events" in err.value.details()


def test_stream_acks_every_batch_in_order(stub, service, pg):
    batches = [ingest_pb2.EventBatch(batch_id=f"b{i}", events=events(40, prefix=f"s{i}")) for i in range(12)]
    acks = list(stub.StreamEvents(iter(batches)))
    assert [a.batch_id for a in acks] == [f"b{i}" for i in range(12)]
    assert sum(a.accepted for a in acks) == 480
    assert count(pg, service[1]) == 480


def test_stream_stops_at_an_invalid_batch_after_acking_the_ones_before(stub, service, pg):
    batches = [
        ingest_pb2.EventBatch(batch_id="ok", events=events(5)),
        ingest_pb2.EventBatch(batch_id="empty"),
        ingest_pb2.EventBatch(batch_id="never", events=events(5, prefix="n")),
    ]
    call = stub.StreamEvents(iter(batches))
    first = next(call)
    assert first.batch_id == "ok"
    with pytest.raises(grpc.RpcError) as err:
        next(call)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'empty'" in err.value.details()
    assert count(pg, service[1]) == 5


def test_client_totals_map_rejections_to_the_overall_index(service, pg):
    evs = events(2500, prefix="c")
    bad = {7: "source_ip", 1234: "user", 2499: "bytes"}
    evs[7].source_ip = "not-an-ip"
    evs[1234].user = ""
    evs[2499].bytes = -5
    evs[100] = evs[99]  # a repeat within one batch
    with IngestClient(service[0], batch_size=300, window=3) as client:
        progressed = []
        totals = client.send(iter(evs), progress=progressed.append)
    assert totals.sent == 2500 and totals.batches == 9 and sum(progressed) == 2500
    assert {r.index: r.field for r in totals.rejections} == bad
    assert all(evs[r.index].event_id == r.event_id for r in totals.rejections)
    assert (totals.accepted, totals.duplicates, totals.rejected) == (2496, 1, 3)
    assert count(pg, service[1]) == 2496
    assert totals.reconnects == 0


def test_client_raises_on_a_refused_batch(service):
    with IngestClient(service[0], batch_size=600) as client:  # the server takes at most 500
        with pytest.raises(IngestError) as err:
            client.send(events(700, prefix="r"))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_client_gives_up_when_nothing_listens():
    with IngestClient("127.0.0.1:1", max_attempts=2, initial_backoff=0.01, max_backoff=0.02) as client:
        with pytest.raises(IngestError, match="unreachable"):
            client.send(events(3))


class BlockedPipeline:
    """Counts the batches a stream has read and holds every write until released."""

    def __init__(self):
        self.read = 0
        self.release = threading.Event()

    def check_batch(self, events, batch_id=""):
        self.read += 1

    def ingest(self, tenant, events, batch_id=""):
        self.release.wait(30)
        return ingest_pb2.BatchAck(batch_id=batch_id, accepted=len(events))


def batches(n: int, size: int) -> list[ingest_pb2.EventBatch]:
    return [ingest_pb2.EventBatch(batch_id=f"w{i}", events=events(size, prefix=f"w{i}")) for i in range(n)]


@pytest.mark.parametrize("window, max_bytes", [
    (2, 8 * 1024 * 1024),  # the window bounds the batches read ahead
    (4, ingest_pb2.EventBatch(batch_id="w0", events=events(50, prefix="w0")).ByteSize() + 1),  # the bytes do
])
def test_a_stream_reads_no_further_than_its_window_while_writes_are_pending(window, max_bytes):
    pipeline = BlockedPipeline()
    cfg = settings(listen="127.0.0.1:0", metrics_port=-1, stream_window=window, stream_max_bytes=max_bytes)
    servicer = IngestServicer(pipeline, cfg, ThreadPoolExecutor(4))
    server, port = build_server(cfg, [Registration(ingest_pb2_grpc.add_IngestServiceServicer_to_server, servicer, "ueba.v1.IngestService")])
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            call = stub.StreamEvents(iter(batches(6, 50)))
            eventually(lambda: pipeline.read >= 2, timeout=10)
            time.sleep(0.3)  # room for a wrong third read to show
            assert pipeline.read == 2
            pipeline.release.set()
            assert [a.batch_id for a in call] == [f"w{i}" for i in range(6)]
    finally:
        server.stop(0).wait()


def test_otlp_receiver_is_registered(service):
    with grpc.insecure_channel(service[0]) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=OTLP_SERVICE_NAME))
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_otlp_listen_adds_a_second_port_to_the_same_server(engine):
    extra = free_port()
    server, port = create_server(settings(listen="127.0.0.1:0", metrics_port=-1, otlp_listen=f"127.0.0.1:{extra}"), engine)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{extra}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="ueba.v1.IngestService"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert extra != port
    finally:
        server.stop(0).wait()
