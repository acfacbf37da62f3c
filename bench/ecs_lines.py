"""Simulated events as the ECS JSON lines an Elastic agent would write: what `ueba ship` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ueba.v1 import common_pb2

_ACTIONS = {
    common_pb2.EVENT_TYPE_LOGON: ("authentication", "user-login"),
    common_pb2.EVENT_TYPE_LOGOFF: ("authentication", "user-logoff"),
    common_pb2.EVENT_TYPE_FILE_DOWNLOAD: ("file", "file-download"),
    common_pb2.EVENT_TYPE_FILE_UPLOAD: ("file", "file-upload"),
    common_pb2.EVENT_TYPE_FILE_DELETE: ("file", "file-deleted"),
    common_pb2.EVENT_TYPE_FILE_SHARE: ("file", "file-shared"),
    common_pb2.EVENT_TYPE_HOST_ACCESS: ("host", "host-access"),
    common_pb2.EVENT_TYPE_APP_ACCESS: ("web", "app-access"),
    common_pb2.EVENT_TYPE_PRIVILEGE_USE: ("iam", "privilege-use"),
    common_pb2.EVENT_TYPE_PASSWORD_CHANGE: ("iam", "password-change"),
    common_pb2.EVENT_TYPE_ACCOUNT_CHANGE: ("iam", "user-account-changed"),
    common_pb2.EVENT_TYPE_SERVICE_TICKET: ("authentication", "kerberos-service-ticket"),
    common_pb2.EVENT_TYPE_SHARE_ACCESS: ("file", "share-access"),
    common_pb2.EVENT_TYPE_PROCESS_START: ("process", "process-start"),
}
_OUTCOMES = {common_pb2.OUTCOME_SUCCESS: "success", common_pb2.OUTCOME_FAILURE: "failure"}


def ecs_document(e: common_pb2.Event) -> dict:
    category, action = _ACTIONS[e.type]
    doc: dict = {
        "@timestamp": e.time.ToJsonString(),
        "event": {"id": e.event_id, "category": [category], "action": action, "module": e.producer or "bench"},
        "user": {"name": e.user},
    }
    if e.outcome in _OUTCOMES:
        doc["event"]["outcome"] = _OUTCOMES[e.outcome]
    if e.source_ip:
        doc["source"] = {"ip": e.source_ip}
        if e.geo.country_code:
            doc["source"]["geo"] = {"country_iso_code": e.geo.country_code, "city_name": e.geo.city}
            if e.geo.has_coordinates:
                doc["source"]["geo"]["location"] = {"lat": e.geo.latitude, "lon": e.geo.longitude}
    if e.destination_host:
        doc["host"] = {"name": e.destination_host}
    if e.application:
        doc["service"] = {"name": e.application}
    if e.bytes:
        doc["file"] = {"size": e.bytes}
    if e.object:
        doc.setdefault("file", {})["path"] = e.object
    if e.user_agent:
        doc["user_agent"] = {"original": e.user_agent}
    return doc


def write_ecs_lines(events: Iterable[common_pb2.Event], path: Path) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for e in events:
            out.write(json.dumps(ecs_document(e), separators=(",", ":")) + "\n")
            n += 1
    return n
