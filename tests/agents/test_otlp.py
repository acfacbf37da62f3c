"""The OTLP/gRPC logs receiver: mapping units with a recording pipeline, and the OTel SDK against a running ingest."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as svc
from opentelemetry.proto.common.v1 import common_pb2 as oc
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from ueba.parsers.base import canonical_user
from ueba.v1 import common_pb2 as pb
from ueba.v1 import ingest_pb2


T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def value(v) -> oc.AnyValue:
    if isinstance(v, dict):
        return oc.AnyValue(kvlist_value=oc.KeyValueList(values=[oc.KeyValue(key=k, value=value(x)) for k, x in v.items()]))
    if isinstance(v, list):
        return oc.AnyValue(array_value=oc.ArrayValue(values=[value(x) for x in v]))
    if isinstance(v, bool):
        return oc.AnyValue(bool_value=v)
    if isinstance(v, int):
        return oc.AnyValue(int_value=v)
    if isinstance(v, float):
        return oc.AnyValue(double_value=v)
    return oc.AnyValue(string_value=str(v))


def kvs(d: dict) -> list[oc.KeyValue]:
    return [oc.KeyValue(key=k, value=value(v)) for k, v in d.items()]


def log_record(body=None, attrs=None, when=T0, event_name="") -> logs_pb2.LogRecord:
    record = logs_pb2.LogRecord(time_unix_nano=int(when.timestamp() * 1e9), attributes=kvs(attrs or {}), event_name=event_name)
    if body is not None:
        record.body.CopyFrom(value(body))
    return record


def request(*records, resource=None) -> svc.ExportLogsServiceRequest:
    return svc.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource_pb2.Resource(attributes=kvs(resource or {})),
                scope_logs=[logs_pb2.ScopeLogs(log_records=list(records))],
            )
        ]
    )


class RecordingPipeline:
    def __init__(self, reject: dict[int, str] | None = None):
        self.batches: list[list[pb.Event]] = []
        self.reject = reject or {}

    def ingest(self, tenant, events, batch_id=""):
        self.batches.append(list(events))
        rejections = [ingest_pb2.Rejection(index=i, field="time", reason=r) for i, r in self.reject.items() if i < len(events)]
        return ingest_pb2.BatchAck(accepted=len(events) - len(rejections), rejected=len(rejections), rejections=rejections)

    @property
    def events(self) -> list[pb.Event]:
        return [e for b in self.batches for e in b]


class Aborted(Exception):
    pass


class Context:
    def abort(self, code, details):
        self.code, self.details = code, details
        raise Aborted(details)


def export(pipeline, req):
    from services.ingest.otlp import OtlpLogsServicer

    return OtlpLogsServicer(pipeline, None).Export(req, Context())


SEMCONV = {
    "user.name": "alice@corp.example", "client.address": "203.0.113.7", "event.outcome": "failure",
    "geo.country.iso_code": "FR", "geo.city.name": "Paris", "geo.location.lat": 48.85, "geo.location.lon": 2.35,
    "user_agent.original": "okhttp/4",
}
WINDOWS_BODY = {
    "event_id": {"id": 4625, "qualifiers": 0}, "provider": {"name": "Microsoft-Windows-Security-Auditing"},
    "computer": "WS7.corp.local", "channel": "Security", "record_id": 4242, "system_time": "2026-11-20T10:00:01.0000000Z",
    "event_data": {"TargetUserName": "bob", "LogonType": "10", "IpAddress": "198.51.100.20", "Status": "0xc000006d", "SubStatus": "0xc0000064"},
}
SYSLOG_ATTRS = {
    "appname": "sshd", "hostname": "bastion", "proc_id": "999", "priority": 38, "facility": 4, "severity": 6,
    "message": "Failed password for root from 192.0.2.44 port 5555 ssh2",
}


def test_each_record_shape_maps_and_unmappable_ones_are_reported():
    pipeline = RecordingPipeline()
    response = export(
        pipeline,
        request(
            log_record(attrs=SEMCONV, event_name="user.login"),
            log_record(body=WINDOWS_BODY),
            log_record(body=SYSLOG_ATTRS["message"], attrs=SYSLOG_ATTRS),
            log_record(body="CEF:0|Acme|VPN|1|7|Login succeeded|3|duser=carol src=10.9.8.7 outcome=success"),
            log_record(attrs={"event.name": "user.login"}),  # no user: cannot be mapped
            log_record(body={**WINDOWS_BODY, "event_id": {"id": 5156}, "record_id": 1}),  # not account activity
            resource={"host.name": "idp01", "service.name": "portal"},
        ),
    )
    semconv, windows, syslog, cef = pipeline.events
    assert (canonical_user(semconv.user), semconv.type, semconv.outcome) == ("alice", pb.EVENT_TYPE_LOGON, pb.OUTCOME_FAILURE)
    assert semconv.source_ip == "203.0.113.7" and semconv.destination_host == "idp01" and semconv.application == "portal"
    assert (semconv.geo.country_code, semconv.geo.city, semconv.geo.latitude) == ("FR", "Paris", 48.85)
    assert semconv.user_agent == "okhttp/4" and semconv.time.ToDatetime(tzinfo=timezone.utc) == T0
    assert (canonical_user(windows.user), windows.failure_reason, windows.logon_type, windows.source_ip) == ("bob", "unknown_user", 10, "198.51.100.20")
    assert (canonical_user(syslog.user), syslog.source_ip, syslog.destination_host, syslog.outcome) == ("root", "192.0.2.44", "bastion", pb.OUTCOME_FAILURE)
    assert (canonical_user(cef.user), cef.outcome, cef.source_ip) == ("carol", pb.OUTCOME_SUCCESS, "10.9.8.7")
    assert response.partial_success.rejected_log_records == 1
    assert "record 4: no user" in response.partial_success.error_message
    assert "1 log records are not account activity" in response.partial_success.error_message


def test_ids_are_stable_across_resends_and_uid_wins():
    records = [log_record(attrs=SEMCONV, event_name="user.login"), log_record(attrs={**SEMCONV, "log.record.uid": "u-1"}, event_name="user.login")]
    first, again = RecordingPipeline(), RecordingPipeline()
    export(first, request(*records))
    export(again, request(*records))
    assert [e.event_id for e in first.events] == [e.event_id for e in again.events]
    assert first.events[1].event_id == "u-1"
    other = RecordingPipeline()
    export(other, request(records[0], resource={"host.name": "elsewhere"}))
    assert other.events[0].event_id != first.events[0].event_id  # the same record from another host is another event


def test_pipeline_rejections_count_per_record_and_full_success_is_empty():
    pipeline = RecordingPipeline(reject={1: "older than UEBA_MAX_PAST_DAYS"})
    response = export(pipeline, request(log_record(attrs=SEMCONV, event_name="user.login"), log_record(body=WINDOWS_BODY)))
    assert response.partial_success.rejected_log_records == 1
    assert "record 1: time: older than" in response.partial_success.error_message
    clean = export(RecordingPipeline(), request(log_record(attrs=SEMCONV, event_name="user.login")))
    assert not clean.HasField("partial_success")


def test_store_outage_is_unavailable_so_exporters_retry():
    from sqlalchemy import create_engine

    from services.ingest.otlp import OtlpLogsServicer
    from services.ingest.pipeline import IngestPipeline
    from services.ingest.settings import IngestSettings
    from ueba.errors import Unavailable, status_of

    unreachable = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    pipeline = IngestPipeline(IngestSettings.from_env({}), unreachable)
    with pytest.raises(Unavailable) as err:
        OtlpLogsServicer(pipeline, None).Export(request(log_record(attrs=SEMCONV, event_name="user.login")), Context())
    # What the shared call interceptor answers: a code OTLP exporters retry.
    assert status_of(err.value, "Export") == (grpc.StatusCode.UNAVAILABLE, "event store unavailable; resend unacknowledged batches later")
    unreachable.dispose()


@pytest.mark.e2e
def test_otel_sdk_exporter_to_running_ingest(ingest_service, agents_pg):
    """The OpenTelemetry Python SDK's OTLP gRPC exporter, unchanged, against the real service."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"host.name": "sdk-host", "service.name": "sdk-portal"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=ingest_service.address, insecure=True)))
    logger = provider.get_logger("ueba.tests.agents")
    base = int(time.time() * 1e9) - 3_600 * 10**9
    try:
        for i in range(5):
            logger.emit(
                timestamp=base + i * 10**9,
                body="login attempt",
                event_name="user.login",
                attributes={"user.name": f"sdk-user-{i % 2}", "client.address": f"192.0.2.{i + 1}", "event.outcome": "failure" if i % 2 else "success"},
            )
        logger.emit(timestamp=base, body=WINDOWS_BODY)
        logger.emit(timestamp=base, body="no user here")  # rejected in partial_success, the rest kept
        provider.force_flush()
    finally:
        provider.shutdown()
    rows = agents_pg.execute(
        "SELECT user_name, event_type, outcome, host(source_ip), destination_host, producer FROM events "
        "WHERE user_name LIKE 'sdk-user-%%' OR destination_host = 'ws7.corp.local' ORDER BY time, user_name"
    ).fetchall()
    assert len(rows) == 6, rows
    sdk = [r for r in rows if r[0].startswith("sdk-user-")]
    assert {r[3] for r in sdk} == {f"192.0.2.{i}" for i in range(1, 6)}
    assert sorted(r[2] for r in sdk) == ["failure", "failure", "success", "success", "success"]
    assert all(r[1] == "logon" and r[4] == "sdk-host" for r in sdk)
    assert ("bob", "logon", "failure") in {r[:3] for r in rows}


def test_text_bodies_raw_syslog_lines_event_xml_and_ecs_json():
    pipeline = RecordingPipeline()
    xml = (
        "<Event><System><EventID>4624</EventID><TimeCreated SystemTime='2026-11-20T10:00:00Z'/><EventRecordID>9</EventRecordID>"
        "<Channel>Security</Channel><Computer>DC01</Computer></System><EventData><Data Name='TargetUserName'>dave</Data></EventData></Event>"
    )
    ecs = '{"@timestamp": "2026-11-20T10:00:00Z", "user": {"name": "erin"}, "event": {"action": "file-upload"}, "file": {"size": 10}}'
    line = "Nov 20 10:00:00 web1 sshd[5]: Accepted password for frank from 192.0.2.9 port 1 ssh2"
    response = export(pipeline, request(log_record(body=xml), log_record(body=ecs), log_record(body=line), log_record(body=line)))
    users = [canonical_user(e.user) for e in pipeline.events]
    assert users == ["dave", "erin", "frank", "frank"] and not response.partial_success.rejected_log_records
    assert pipeline.events[1].type == pb.EVENT_TYPE_FILE_UPLOAD and pipeline.events[1].bytes == 10
    # Two identical lines are two events, as they would be read from a file.
    assert pipeline.events[2].event_id != pipeline.events[3].event_id
