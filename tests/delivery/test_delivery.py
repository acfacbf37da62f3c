"""Delivery to real receivers: signed webhooks with retries and dead letters, syslog (RFC 5424
JSON and CEF) over TCP, filters, quiet hours and rate limits."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from prometheus_client import REGISTRY

from services.delivery.destinations import parse_destination
from services.delivery.servicer import DeliveryServicer
from services.delivery.settings import DeliverySettings
from tests.delivery.helpers import ENV, deliver, finding, statuses, webhook, write
from harness.receivers import SyslogTcpReceiver, WebhookReceiver
from ueba.v1 import delivery_pb2


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture
def collector():
    c = SyslogTcpReceiver()
    yield c
    c.close()


def test_a_webhook_that_fails_at_first_gets_every_finding_once_signed(fresh_engine, receiver):
    receiver.fail_first = 4
    write(fresh_engine, finding(score=75), finding(user="bob", score=45, kind="impossible_travel"))  # alice: high
    deliver(fresh_engine, [webhook(receiver.url)])
    docs = receiver.documents()
    assert receiver.bad_signatures == 0 and len(receiver.failed_keys) == 4
    assert sorted(d["event"]["action"] for d in docs) == ["anomaly-detected", "anomaly-detected", "incident-opened",
                                                          "incident-opened", "risk-level-raised"]
    assert len(set(receiver.keys())) == len(docs)  # once each
    assert all(k == d["event"]["id"] for k, d in zip(receiver.keys(), docs))
    assert set(statuses(fresh_engine, "soar").values()) == {"delivered"}


def test_a_receivers_own_credential_goes_in_the_authorization_header(fresh_engine):
    seen = []

    class Hec(WebhookReceiver):
        def _handle(self, handler, body):
            seen.append(handler.headers.get("Authorization"))
            super()._handle(handler, body)

    hec = Hec()
    try:
        write(fresh_engine, finding(score=30))
        env = {**ENV, "HEC_TOKEN": "Splunk 0000-1111"}
        splunk = parse_destination({"name": "splunk", "type": "webhook", "url": hec.url, "secret_env": "HOOK_SECRET",
                                    "authorization_env": "HEC_TOKEN", "kinds": ["rule"]}, env)
        deliver(fresh_engine, [splunk])
        assert seen == ["Splunk 0000-1111"] and len(hec.accepted) == 1
    finally:
        hec.close()


def test_a_forged_signature_is_refused_by_the_receiver(receiver):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(receiver.url, data=b"{}", method="POST", headers={
        "X-UEBA-Timestamp": "1", "X-UEBA-Signature": "sha256=" + "0" * 64, "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(request, timeout=5)
    assert receiver.bad_signatures == 1 and receiver.accepted == []


def test_a_refusing_webhook_dead_letters_visibly_and_retries_on_request(fresh_engine, receiver):
    receiver.status = 400  # the receiver says the request is wrong: retrying cannot help
    write(fresh_engine, finding(score=30))
    soar = webhook(receiver.url, kinds=["rule"])
    deliver(fresh_engine, [soar])
    assert list(statuses(fresh_engine, "soar").values()) == ["dead"]
    servicer = DeliveryServicer(fresh_engine, DeliverySettings.from_env({}))
    dead = servicer.ListDeliveries(delivery_pb2.ListDeliveriesRequest(status="dead"), None).deliveries
    assert [(d.destination, d.kind, d.attempts, d.last_error) for d in dead] == [("soar", "rule", 1, "HTTP 400")]
    assert REGISTRY.get_sample_value("ueba_delivery_attempts_total", {"destination": "soar", "outcome": "dead"}) >= 1

    receiver.status = 200  # fixed on the receiver's side
    assert servicer.RetryDeliveries(delivery_pb2.RetryDeliveriesRequest(destination="soar"), None).requeued == 1
    deliver(fresh_engine, [soar])
    assert list(statuses(fresh_engine, "soar").values()) == ["delivered"]
    assert [d["event"]["id"] for d in receiver.documents()] == [dead[0].event_id]


def test_retries_stop_after_the_destinations_attempts_and_the_delivery_is_dead(fresh_engine, receiver):
    receiver.fail_first = 100
    write(fresh_engine, finding(score=30))
    deliver(fresh_engine, [webhook(receiver.url, kinds=["rule"], max_attempts=3)])
    assert list(statuses(fresh_engine, "soar").values()) == ["dead"] and len(receiver.failed_keys) == 3


def _rfc5424(message: bytes) -> tuple[int, str, str]:
    """(PRI, MSGID, body) of an RFC 5424 message without structured data."""
    m = re.match(rb"^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) - \xef\xbb\xbf(.*)$", message, re.S)
    assert m, message[:120]
    assert datetime.fromisoformat(m.group(2).decode().replace("Z", "+00:00")).tzinfo is not None
    return int(m.group(1)), m.group(6).decode(), m.group(7).decode()


def test_syslog_over_tcp_carries_json_and_cef_that_agents_parse(fresh_engine, collector):
    write(fresh_engine, finding(user="carol", score=75, kind="impossible_travel"))
    siem_json = parse_destination({"name": "siem-json", "type": "syslog", "address": collector.address,
                                   "kinds": ["rule"]}, ENV)
    siem_cef = parse_destination({"name": "siem-cef", "type": "syslog", "address": collector.address,
                                  "format": "cef", "framing": "lf", "facility": "local4", "kinds": ["rule", "risk"]}, ENV)
    deliver(fresh_engine, [siem_json, siem_cef])
    messages = collector.wait_for(3)
    assert len(messages) == 3
    parsed = [_rfc5424(m) for m in messages]
    (pri, msg_id, body), = [p for p in parsed if p[2].startswith("{")]
    assert pri == 16 * 8 + 3 and msg_id == "anomaly-detected"  # local0, severity error for a high finding
    doc = json.loads(body)
    assert doc["user"]["name"] == "carol" and doc["rule"]["id"] == "impossible_travel"
    cefs = sorted(p[2] for p in parsed if p[2].startswith("CEF:"))
    assert len(cefs) == 2 and all(p[0] // 8 == 20 for p in parsed if p[2].startswith("CEF:"))
    anomaly = next(c for c in cefs if "|rule:impossible_travel|" in c)
    assert anomaly.startswith("CEF:0|UEBA|UEBA|1|rule:impossible_travel|impossible travel|7|")
    assert "suser=carol" in anomaly and "cn1=75 cn1Label=riskScore" in anomaly and "externalId=" in anomaly


def test_each_destination_gets_what_its_filter_asks_for(fresh_engine, receiver):
    write(fresh_engine, finding("acme", user="dave", score=30), finding("acme", user="erin", score=80, kind="exfil"),
          finding("other", user="fay", score=95, kind="exfil"))
    only_acme_high = webhook(receiver.url, name="acme-high", tenants=["acme"], min_risk=70)
    deliver(fresh_engine, [only_acme_high])
    got = sorted((d["ueba"]["tenant"], d["ueba"]["kind"], d["ueba"]["entity"]["name"]) for d in receiver.documents())
    assert got == [("acme", "incident", "erin"), ("acme", "risk", "erin"), ("acme", "rule", "erin")]


def test_risk_notifications_go_only_for_the_levels_a_destination_asks(fresh_engine, receiver):
    write(fresh_engine, finding(user="gus", score=50))  # medium
    write(fresh_engine, finding(user="gus", score=80, kind="exfil"))  # high
    write(fresh_engine, finding(user="gus", score=95, kind="privilege"))  # critical
    deliver(fresh_engine, [webhook(receiver.url, kinds=["risk"], notify_levels=["critical"])])
    assert [d["ueba"]["risk"]["level"] for d in receiver.documents()] == ["critical"]


def test_quiet_hours_hold_risk_notifications_but_not_critical_ones_or_findings(fresh_engine, receiver):
    now = datetime.now(timezone.utc)
    around_now = f"{(now.hour - 1) % 24:02d}:00-{(now.hour + 2) % 24:02d}:00"
    write(fresh_engine, finding(user="hal", score=75))  # a high crossing
    write(fresh_engine, finding(user="ivy", score=95))  # a critical crossing
    night = webhook(receiver.url, quiet_hours=around_now, quiet_timezone="UTC", kinds=["rule", "risk"])
    deliver(fresh_engine, [night], timeout=3)
    sent = sorted((d["ueba"]["kind"], d["ueba"]["entity"]["name"]) for d in receiver.documents())
    assert sent == [("risk", "ivy"), ("rule", "hal"), ("rule", "ivy")]
    assert sorted(statuses(fresh_engine, "soar").values()).count("pending") == 1  # hal's crossing waits

    morning = webhook(receiver.url, kinds=["rule", "risk"])  # the same destination after its quiet hours
    deliver(fresh_engine, [morning])
    assert ("risk", "hal") in [(d["ueba"]["kind"], d["ueba"]["entity"]["name"]) for d in receiver.documents()]


def test_a_rate_limit_spreads_deliveries_over_periods_and_loses_none(fresh_engine, receiver):
    write(fresh_engine, *[finding(user=f"u{i}", score=30) for i in range(5)])
    limited = webhook(receiver.url, kinds=["rule"], rate_limit=2, rate_period_seconds=60)
    deliver(fresh_engine, [limited], timeout=2)
    assert len(receiver.accepted) == 2
    assert sorted(statuses(fresh_engine, "soar").values()) == ["delivered"] * 2 + ["pending"] * 3
