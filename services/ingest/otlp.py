"""OTLP/gRPC logs receiver: OpenTelemetry Collectors, Fluent Bit and the OTel SDKs send here unchanged.

Each LogRecord, with its resource's attributes, becomes zero or more Events:
- a map body from the Collector's windowseventlog receiver (event_id, provider,
  event_data, ...) goes through the Windows Security event parser;
- a record from the Collector's syslog receiver (attributes appname, hostname,
  proc_id, message) goes through the syslog message parser;
- a text body that is a CEF or syslog line, or a JSON object, goes through the
  parser its shape names;
- anything else is read as OpenTelemetry semantic-convention and ECS-style
  attributes (user.name, client.address, event.name, event.outcome, ...).
Records that cannot be mapped are counted in partial_success with the reasons;
records that were understood but are not account activity (a Sysmon event)
are not stored and are mentioned in partial_success.error_message as a warning.

Idempotency: the event id is the record's `log.record.uid` (or ECS
`event.id`), else the source's own id (Windows computer and record number,
M365 Id), else a hash of the record and its resource, so a resent export is
stored once. Export returns only after the pipeline committed every batch;
a store outage answers UNAVAILABLE, which OTLP exporters retry.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from typing import Any, Mapping

import grpc
import orjson
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2 as otel_common
from opentelemetry.proto.logs.v1 import logs_pb2

from ueba.callctx import current_caller
from ueba.parsers.base import Event, ParseError, ParseOptions, stable_id
from ueba.parsers.cef import CefParser
from ueba.parsers.detect import classify_object
from ueba.parsers.fields import event_from_fields, flatten
from ueba.parsers.microsoft import EntraSignInParser, UnifiedAuditLogParser
from ueba.parsers.syslog import ISO_HEADER, RFC3164, RFC5424, SyslogParser, parse_message
from ueba.parsers.winevent import WindowsEventParser

log = logging.getLogger(__name__)

MAX_REASONS = 5
SYSLOG_KEYS = ("appname", "hostname")


# Most attribute values are scalars, read by the name WhichOneof gives.
_CONTAINERS = frozenset(("kvlist_value", "array_value", "bytes_value"))


def any_value(value: otel_common.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind not in _CONTAINERS:
        return getattr(value, kind)
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    return value.bytes_value.hex()


def attributes(kvs) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def _record_time(record: logs_pb2.LogRecord) -> datetime | None:
    nanos = record.time_unix_nano or record.observed_time_unix_nano
    if not nanos:
        return None
    return datetime.fromtimestamp(nanos / 1e9, timezone.utc)


def _is_windows_event(body: Mapping[str, Any]) -> bool:
    return "event_id" in body and any(k in body for k in ("provider", "event_data", "channel", "system_time"))


class RecordMapper:
    """LogRecords to Events; parsers that keep per-stream state live as long as the mapper."""

    def __init__(self, options: ParseOptions | None = None):
        self.options = options or ParseOptions()
        self.windows = WindowsEventParser(self.options)
        self.m365 = UnifiedAuditLogParser(self.options)
        self.entra = EntraSignInParser(self.options)
        self.cef = CefParser(self.options)
        self.syslog = SyslogParser(self.options)

    def map(self, resource: Mapping[str, Any], resource_bytes: bytes, record: logs_pb2.LogRecord) -> list[Event]:
        attrs = {**resource, **attributes(record.attributes)}
        if record.event_name:  # the event name moved from an attribute to a record field
            attrs.setdefault("event.name", record.event_name)
        body = any_value(record.body)
        when = _record_time(record)
        uid = attrs.get("log.record.uid") or attrs.get("event.id")
        record_id = str(uid) if uid else stable_id("otlp", hashlib.sha256(resource_bytes + record.SerializeToString(deterministic=True)).hexdigest())

        if isinstance(body, Mapping):
            return self._map_object(body, attrs, when, uid, record_id)
        text = body if isinstance(body, str) else ("" if body is None else str(body))
        if any(k in attrs for k in SYSLOG_KEYS) and ("message" in attrs or text):
            return self._map_syslog(attrs, text, when, record_id)
        stripped = text.strip()
        if "CEF:" in stripped[:200]:
            events = self.cef.parse(stripped, default_time=when)
            if uid:
                for event in events:
                    event.event_id = str(uid)
            return events
        if stripped.startswith("<Event"):  # windowseventlog with raw: true, or forwarded event XML
            events = self.windows.parse(stripped)
            return _with_ids(events, str(uid)) if uid else events
        if stripped.startswith("{"):
            try:
                decoded = orjson.loads(stripped)  # the ECS parser's decoder, several times the standard one's speed
            except orjson.JSONDecodeError:
                decoded = None
            if isinstance(decoded, dict):
                return self._map_object(decoded, attrs, when, uid, record_id)
        if stripped and (RFC3164.match(stripped) or RFC5424.match(stripped) or ISO_HEADER.match(stripped)):
            events = self.syslog.parse(stripped)
            return _with_ids(events, record_id) if uid else events
        fields = dict(attrs)
        if stripped:
            fields.setdefault("message", stripped)
        return [event_from_fields(fields, "otlp", self.options, when=when, event_id=record_id)]

    def _map_object(self, body: Mapping[str, Any], attrs: Mapping[str, Any], when, uid, record_id: str) -> list[Event]:
        if _is_windows_event(body):
            events = self.windows.parse(body)
        else:
            shape = classify_object(body)
            if shape == "winevent":
                events = self.windows.parse(body)
            elif shape == "m365":
                events = self.m365.parse(body)
            elif shape == "entra":
                events = self.entra.parse(body)
            else:
                fields = {**attrs, **flatten(body)}
                has_time = any(k in fields for k in ("@timestamp", "timestamp"))
                return [
                    event_from_fields(fields, "otlp", self.options, when=None if has_time or when is None else when, event_id=record_id)
                ]
        return _with_ids(events, str(uid)) if uid else events

    def _map_syslog(self, attrs: Mapping[str, Any], text: str, when, record_id: str) -> list[Event]:
        message = str(attrs.get("message") or text)
        if when is None:
            raise ParseError("syslog record without a time")
        return parse_message(
            str(attrs.get("hostname") or attrs.get("host.name") or ""),
            str(attrs.get("appname") or ""),
            str(attrs.get("proc_id") or ""),
            message,
            when,
            record_id,
            self.options,
        )


def _with_ids(events: list[Event], base: str) -> list[Event]:
    for i, event in enumerate(events):
        event.event_id = base if len(events) == 1 else f"{base}:{i}"
    return events


class OtlpLogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, pipeline, settings=None, options: ParseOptions | None = None):
        self.pipeline = pipeline
        self.settings = settings
        self.options = options or ParseOptions()
        max_batch = getattr(settings, "max_batch_size", 5000) or 5000
        self.batch_size = max(1, min(5000, max_batch))

    def Export(self, request: logs_service_pb2.ExportLogsServiceRequest, context: grpc.ServicerContext):
        tenant = current_caller(getattr(self.settings, "tenant", "default")).tenant
        mapper = RecordMapper(self.options)
        events: list[Event] = []
        origin: list[int] = []  # record number of each event
        reasons: dict[int, str] = {}
        total = ignored = 0
        for resource_logs in request.resource_logs:
            resource = attributes(resource_logs.resource.attributes)
            resource_bytes = resource_logs.resource.SerializeToString(deterministic=True)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    n = total
                    total += 1
                    try:
                        mapped = mapper.map(resource, resource_bytes, record)
                    except ParseError as exc:
                        reasons[n] = str(exc)
                        continue
                    except Exception as exc:  # a malformed value deep in a body must not fail the export
                        log.warning("OTLP record not mapped", exc_info=True)
                        reasons[n] = f"unreadable record: {type(exc).__name__}: {exc}"
                        continue
                    if not mapped:
                        ignored += 1
                    events.extend(mapped)
                    origin.extend([n] * len(mapped))

        for start in range(0, len(events), self.batch_size):
            chunk = events[start : start + self.batch_size]
            ack = self.pipeline.ingest(tenant, chunk, f"export records {origin[start]}-{origin[start + len(chunk) - 1]}")
            for rejection in ack.rejections:
                n = origin[start + rejection.index]
                reasons.setdefault(n, f"{rejection.field}: {rejection.reason}")

        response = logs_service_pb2.ExportLogsServiceResponse()
        messages = []
        if reasons:
            listed = "; ".join(f"record {n}: {reason}" for n, reason in sorted(reasons.items())[:MAX_REASONS])
            more = f" (and {len(reasons) - MAX_REASONS} more)" if len(reasons) > MAX_REASONS else ""
            messages.append(f"{len(reasons)} of {total} log records rejected: {listed}{more}")
            response.partial_success.rejected_log_records = len(reasons)
        if ignored:
            messages.append(f"{ignored} log records are not account activity and were not stored")
        if messages:
            response.partial_success.error_message = ". ".join(messages)
        return response
