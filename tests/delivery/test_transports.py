"""Syslog over TLS (verified against the destination's CA) and UDP, the anomaly.log destination,
and the removal of what was delivered long ago."""

from __future__ import annotations

import json
import socket
import ssl
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from services.delivery.destinations import parse_destination
from services.delivery.worker import Upkeep
from tests.delivery.helpers import ENV, deliver, finding, statuses, write
from harness.receivers import SyslogTcpReceiver
from tests.security.pki import Authority
from ueba.store.schema import outbox


@pytest.fixture
def authority(tmp_path):
    ca = Authority.create("collector CA")
    cert, key = ca.issue("collector", dns=("localhost",))
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return tmp_path, context


def test_syslog_over_tls_reaches_a_collector_the_destination_trusts(fresh_engine, authority):
    folder, context = authority
    collector = SyslogTcpReceiver(tls=context)
    try:
        write(fresh_engine, finding(user="kim", score=50))
        siem = parse_destination({"name": "siem", "type": "syslog", "address": collector.address, "kinds": ["rule"],
                                  "ca_file": str(folder / "ca.pem")}, ENV)
        deliver(fresh_engine, [siem])
        (message,) = collector.wait_for(1)
        assert b'"user":{"name":"kim"}' in message
        assert set(statuses(fresh_engine, "siem").values()) == {"delivered"}
    finally:
        collector.close()


def test_syslog_over_tls_refuses_a_collector_it_cannot_verify(fresh_engine, authority):
    _folder, context = authority
    collector = SyslogTcpReceiver(tls=context)
    try:
        write(fresh_engine, finding(user="lee", score=50))
        # No ca_file: the system's CAs do not know the collector's private CA.
        siem = parse_destination({"name": "siem", "type": "syslog", "address": collector.address, "kinds": ["rule"]}, ENV)
        deliver(fresh_engine, [siem], timeout=2)
        assert collector.messages == []
        assert set(statuses(fresh_engine, "siem").values()) == {"pending"}  # retried later, not lost
    finally:
        collector.close()


def test_syslog_over_udp_sends_one_datagram_per_finding(fresh_engine):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        write(fresh_engine, finding(user="max", score=95))
        siem = parse_destination({"name": "siem", "type": "syslog", "address": f"udp://127.0.0.1:{sock.getsockname()[1]}",
                                  "kinds": ["rule"], "facility": "auth"}, ENV)
        deliver(fresh_engine, [siem])
        datagram = sock.recv(65536)
    assert datagram.startswith(b"<34>1 ")  # auth (4) * 8 + critical (2)
    assert json.loads(datagram.split(b"\xef\xbb\xbf", 1)[1])["user"]["name"] == "max"


def test_the_anomaly_log_destination_writes_every_kind_as_one_json_line(fresh_engine, tmp_path):
    path = tmp_path / "anomaly.log"
    write(fresh_engine, finding(user="ned", score=85), finding(user="ned", score=70, kind="model_day", source="model"))
    log = parse_destination({"name": "anomaly-log", "type": "log", "target": str(path)}, ENV)
    deliver(fresh_engine, [log])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted({line["ueba"]["kind"] for line in lines}) == ["incident", "model", "risk", "rule"]
    assert all(line["@timestamp"].endswith("Z") and line["event"]["id"] for line in lines)


def test_upkeep_removes_old_rows_with_nothing_pending_and_keeps_the_rest(fresh_engine):
    write(fresh_engine, finding(user="ora", score=30), finding(user="pia", score=30))
    dest = parse_destination({"name": "soar", "type": "log", "target": "off", "kinds": ["rule"]}, ENV)
    deliver(fresh_engine, [dest])
    with fresh_engine.begin() as conn:
        conn.execute(update(outbox).values(created_at=datetime.now(timezone.utc) - timedelta(days=30)))
        conn.execute(update(outbox).where(outbox.c.id == min(statuses(fresh_engine, "soar"))).values(routed=False))
    Upkeep(fresh_engine, [dest], retention_days=7).run_once()
    with fresh_engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
    assert left == 1  # the unrouted one stays until it is routed and delivered
