"""Destination configuration: errors name the variable and the destination; CEF escaping;
back-off bounds."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import pytest

from services.delivery.cef import cef
from services.delivery.destinations import load_destinations
from services.delivery.pacing import retry_delay
from services.delivery.settings import DeliverySettings
from ueba.settings import SettingsError


def test_the_anomaly_log_is_a_destination_of_every_finding_unless_off():
    (log,) = load_destinations("", "", "")
    assert (log.name, log.type, log.options) == ("anomaly-log", "log", {"target": ""})
    assert log.wants("any", "model", 1) and not log.wants("any", "risk", 50)  # risk: high and critical by default
    assert load_destinations("", "", "off") == []


@pytest.mark.parametrize("raw, message", [
    ("{", "UEBA_DELIVERY_DESTINATIONS: not JSON"),
    ('{"name": "x"}', "expected a JSON array"),
    ('[{"name": "x", "type": "pager"}]', "destination 'x': type must be one of webhook, syslog, log"),
    ('[{"name": "x", "type": "webhook", "url": "https://h/"}]', "secret_env must name a set environment variable"),
    ('[{"name": "x", "type": "syslog", "address": "tcp://h"}]', "expected udp://, tcp:// or tls://host:port"),
    ('[{"name": "x", "type": "log", "kinds": ["rules"]}]', "kinds 'rules' is not one of rule, model, incident, risk"),
    ('[{"name": "x", "type": "log", "min_risk": 200}]', "min_risk must be a number from 0 to 100"),
    ('[{"name": "x", "type": "log", "quiet_hours": "22-07"}]', "quiet_hours '22-07' is not HH:MM-HH:MM"),
    ('[{"name": "x", "type": "log", "quiet_hours": "22:00-07:00", "quiet_timezone": "Mars/Base"}]', "not a time zone"),
    ('[{"name": "x", "type": "log", "urll": 1}]', "unknown key 'urll' for type log"),
    ('[{"name": "x", "type": "webhook", "url": "https://h/", "secret_env": "PATH", "headers": {"Authorization": "t"}}]',
     "put credentials in authorization_env"),
    ('[{"name": "x", "type": "log"}, {"name": "x", "type": "log"}]', "'x' is used twice"),
])
def test_a_bad_destination_stops_the_service_naming_what_is_wrong(raw, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        DeliverySettings.from_env({"UEBA_DELIVERY_DESTINATIONS": raw, "UEBA_ANOMALY_LOG": "off"})


def test_destinations_can_come_from_a_file(tmp_path):
    path = tmp_path / "destinations.json"
    path.write_text(json.dumps([{"name": "siem", "type": "syslog", "address": "udp://127.0.0.1:514"}]))
    settings = DeliverySettings.from_env({"UEBA_DELIVERY_DESTINATIONS_FILE": str(path), "UEBA_ANOMALY_LOG": "off"})
    assert [d.name for d in settings.destinations()] == ["siem"]


def test_quiet_hours_span_midnight_in_their_time_zone():
    (d,) = load_destinations('[{"name": "n", "type": "log", "quiet_hours": "22:00-07:00", '
                             '"quiet_timezone": "Europe/Paris"}]', "", "off")
    assert d.held_back(datetime(2026, 12, 7, 22, 30, tzinfo=timezone.utc)) == (frozenset({"risk"}), 90)  # 23:30 Paris
    assert d.held_back(datetime(2026, 12, 7, 5, 59, tzinfo=timezone.utc)) is not None  # 06:59 Paris
    assert d.held_back(datetime(2026, 12, 7, 6, 0, tzinfo=timezone.utc)) is None  # 07:00 Paris


def test_back_off_doubles_up_to_its_cap_with_jitter_and_honours_retry_after():
    rng = random.Random(3)
    delays = [retry_delay(n, 1.0, 60.0, rng=rng) for n in range(1, 10)]
    assert all(2 ** (n - 1) / 2 <= d <= 2 ** (n - 1) for n, d in zip(range(1, 7), delays))
    assert all(30 <= d <= 60 for d in delays[6:]) and len(set(delays)) == len(delays)
    assert retry_delay(1, 1.0, 60.0, retry_after=120) == 120


def test_cef_escapes_what_would_break_its_fields():
    doc = {
        "@timestamp": "2026-12-07T10:00:00Z", "message": "a|b = c\nd\\e",
        "event": {"id": "id-1", "action": "anomaly-detected", "dataset": "ueba.rule", "severity": 95,
                  "risk_score": 95.0, "start": "2026-12-07T09:50:00Z", "end": "2026-12-07T10:00:00Z"},
        "rule": {"id": "p|1", "name": "pipe|name"}, "user": {"name": "x=y"},
        "ueba": {"kind": "rule", "tenant": "t", "entity": {"type": "user", "name": "x=y"}, "risk_level": "critical",
                 "incident_id": "i"},
    }
    line = cef(doc)
    assert line.startswith("CEF:0|UEBA|UEBA|1|rule:p\\|1|pipe\\|name|9|rt=1796637600000 ")
    assert "msg=a|b \\= c\\nd\\\\e " in line and "suser=x\\=y " in line
