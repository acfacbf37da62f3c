"""Microsoft cloud sign-ins: the Microsoft 365 Unified Audit Log and Entra ID sign-in logs.

Unified Audit Log records (Search-UnifiedAuditLog, the Management Activity API)
repeat: the same record comes back from overlapping searches, so its `Id` is
the event id and ingest keeps one. Entra ID sign-ins come three ways: the
Graph API (`createdDateTime`, `status.errorCode`), Azure Monitor diagnostic
settings (`time`, `properties{...}`) and Log Analytics `SigninLogs` exports,
whose CSV form carries JSON in cells (`LocationDetails_dynamic`) and a
`CreatedDateTime [UTC]` like `4/28/2021, 2:08:45.221 PM`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ueba.parsers.base import (
    FAILURE,
    SUCCESS,
    Event,
    ParseError,
    ParseOptions,
    clean_ip,
    first,
    load_json_object,
    parse_iso_time,
    record_hash_id,
    set_time,
    set_user,
)
from ueba.v1 import common_pb2

UAL_TYPES = {
    "userloggedin": (common_pb2.EVENT_TYPE_LOGON, SUCCESS),
    "userloginfailed": (common_pb2.EVENT_TYPE_LOGON, FAILURE),
    "filedownloaded": (common_pb2.EVENT_TYPE_FILE_DOWNLOAD, SUCCESS),
    "filesyncdownloadedfull": (common_pb2.EVENT_TYPE_FILE_DOWNLOAD, SUCCESS),
    "fileuploaded": (common_pb2.EVENT_TYPE_FILE_UPLOAD, SUCCESS),
    "filesyncuploadedfull": (common_pb2.EVENT_TYPE_FILE_UPLOAD, SUCCESS),
    "filedeleted": (common_pb2.EVENT_TYPE_FILE_DELETE, SUCCESS),
    "filerecycled": (common_pb2.EVENT_TYPE_FILE_DELETE, SUCCESS),
    "filedeletedfirststagerecyclebin": (common_pb2.EVENT_TYPE_FILE_DELETE, SUCCESS),
    "sharingset": (common_pb2.EVENT_TYPE_FILE_SHARE, SUCCESS),
    "sharinginvitationcreated": (common_pb2.EVENT_TYPE_FILE_SHARE, SUCCESS),
    "anonymouslinkcreated": (common_pb2.EVENT_TYPE_FILE_SHARE, SUCCESS),
    "companylinkcreated": (common_pb2.EVENT_TYPE_FILE_SHARE, SUCCESS),
    "change user password.": (common_pb2.EVENT_TYPE_PASSWORD_CHANGE, SUCCESS),
    "reset user password.": (common_pb2.EVENT_TYPE_PASSWORD_CHANGE, SUCCESS),
    "add user.": (common_pb2.EVENT_TYPE_ACCOUNT_CHANGE, SUCCESS),
    "update user.": (common_pb2.EVENT_TYPE_ACCOUNT_CHANGE, SUCCESS),
    "delete user.": (common_pb2.EVENT_TYPE_ACCOUNT_CHANGE, SUCCESS),
}


def _name_values(items: Any) -> dict[str, str]:
    """[{'Name': 'UserAgent', 'Value': '...'}] -> {'UserAgent': '...'}."""
    out: dict[str, str] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping) and "Name" in item:
                out[str(item["Name"])] = str(item.get("Value", ""))
    return out


def client_ip(value: Any) -> str:
    """ClientIP may carry a port: '1.2.3.4:5678' or '[2001:db8::1]:443'."""
    text = str(value or "").strip()
    if text.startswith("[") and "]" in text:
        return clean_ip(text[1 : text.index("]")])
    ip = clean_ip(text)
    if ip:
        return ip
    if text.count(":") == 1:
        return clean_ip(text.split(":", 1)[0])
    return ""


class UnifiedAuditLogParser:
    name = "m365"

    def __init__(self, options: ParseOptions | None = None):
        self.options = options or ParseOptions()

    def parse(self, record: str | Mapping[str, Any]) -> list[Event]:
        r = load_json_object(record)
        operation = str(r.get("Operation") or "")
        if not operation:
            raise ParseError("no Operation: not a Unified Audit Log record")
        mapped = UAL_TYPES.get(operation.lower())
        if not mapped:
            return []
        user = first(r, "UserId", "UserKey")
        if not user:
            raise ParseError("no UserId")
        if not r.get("CreationTime"):
            raise ParseError("no CreationTime")
        event = Event()
        # The audit log writes UTC without an offset.
        set_time(event, parse_iso_time(str(r["CreationTime"])))
        set_user(event, str(user))
        event.type, event.outcome = mapped
        status = str(r.get("ResultStatus") or "").lower()
        if status in ("failed", "failure"):
            event.outcome = FAILURE
        elif status in ("success", "succeeded", "true") and event.type != common_pb2.EVENT_TYPE_LOGON:
            event.outcome = SUCCESS
        ip = client_ip(first(r, "ClientIP", "ActorIpAddress", "ClientIPAddress"))
        if ip:
            event.source_ip = ip
        extended = _name_values(r.get("ExtendedProperties"))
        device = _name_values(r.get("DeviceProperties"))
        agent = first(r, "UserAgent") or extended.get("UserAgent")
        if agent:
            event.user_agent = str(agent)
        event.application = str(first(r, "Workload") or "m365")
        if r.get("ApplicationId"):
            event.attributes["application_id"] = str(r["ApplicationId"])
        if event.outcome == FAILURE:
            event.failure_reason = str(first(r, "LogonError", "ErrorNumber") or extended.get("ResultStatusDetail") or "failed")
        if r.get("ErrorNumber"):
            event.attributes["error_number"] = str(r["ErrorNumber"])
        obj = first(r, "SourceRelativeUrl", "ObjectId")
        if obj and event.type != common_pb2.EVENT_TYPE_LOGON:
            event.object = str(first(r, "SourceFileName") and f"{obj}/{r['SourceFileName']}" or obj)[:1024]
        for key in ("OS", "BrowserType"):
            if device.get(key):
                event.attributes[key.lower()] = device[key]
        event.action = operation
        event.producer = "m365"
        event.event_id = str(r.get("Id") or record_hash_id("m365", r))
        return [event]


def _lookup(record: Mapping[str, Any]) -> dict[str, Any]:
    """Case-insensitive keys, without Log Analytics' '_dynamic'/'_string' and ' [UTC]' suffixes.

    JSON held in a string cell is decoded; a non-empty value wins over an empty one.
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = str(key).lstrip("\ufeff").strip()
        name = name.replace(" [UTC]", "").lower()
        for suffix in ("_dynamic", "_string"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        if isinstance(value, str):
            text = value.strip()
            if text[:1] in ("{", "[") and text[-1:] in ("}", "]"):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    pass
        if value in (None, "", [], {}) and name in out:
            continue
        out[name] = value
    return out


def _entra_time(value: Any, options: ParseOptions) -> datetime:
    text = str(value).strip()
    for fmt in ("%m/%d/%Y, %I:%M:%S.%f %p", "%m/%d/%Y, %I:%M:%S %p", "%m/%d/%Y %I:%M:%S %p"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=options.timezone)
        except ValueError:
            continue
    return parse_iso_time(text, options.timezone)


def _lower_map(value: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in value.items()} if isinstance(value, Mapping) else {}


class EntraSignInParser:
    name = "entra"

    def __init__(self, options: ParseOptions | None = None):
        self.options = options or ParseOptions()

    def parse(self, record: str | Mapping[str, Any]) -> list[Event]:
        raw = load_json_object(record)
        r = _lookup(raw)
        props = r.get("properties")
        if isinstance(props, Mapping):  # Azure Monitor diagnostic settings wrap the Graph shape
            r = {**r, **_lookup(props)}
        user = first(r, "userprincipalname", "signinidentifier", "alternatesigninname", "userid")
        if not user:
            raise ParseError("no userPrincipalName")
        when = first(r, "createddatetime", "timegenerated", "time")
        if not when:
            raise ParseError("no createdDateTime")
        event = Event()
        set_time(event, _entra_time(when, self.options))
        set_user(event, str(user))
        event.type = common_pb2.EVENT_TYPE_LOGON
        status = _lower_map(r.get("status"))
        code = first(status, "errorcode")
        if code is None:
            code = first(r, "resulttype", "errorcode")
        try:
            code_number = int(str(code)) if code is not None else None
        except ValueError:
            raise ParseError(f"unreadable result code {code!r}") from None
        if code_number is None:
            raise ParseError("no status.errorCode / ResultType")
        event.outcome = SUCCESS if code_number == 0 else FAILURE
        if code_number:
            event.failure_reason = str(first(status, "failurereason") or first(r, "resultdescription") or code_number)[:256]
            event.attributes["error_code"] = str(code_number)
        ip = clean_ip(first(r, "ipaddress", "callipaddress", "calleripaddress"))
        if ip:
            event.source_ip = ip
        location = _lower_map(first(r, "locationdetails", "location"))
        if location:
            if location.get("countryorregion"):
                event.geo.country_code = str(location["countryorregion"]).upper()
            if location.get("city"):
                event.geo.city = str(location["city"])
            coords = _lower_map(location.get("geocoordinates"))
            if coords.get("latitude") is not None and coords.get("longitude") is not None:
                event.geo.latitude = float(coords["latitude"])
                event.geo.longitude = float(coords["longitude"])
                event.geo.has_coordinates = True
        app = first(r, "appdisplayname", "resourcedisplayname")
        if app:
            event.application = str(app)
        if r.get("useragent"):
            event.user_agent = str(r["useragent"])
        device = _lower_map(first(r, "devicedetail"))
        if device.get("displayname"):
            event.source_host = str(device["displayname"]).lower()
        for key in ("operatingsystem", "browser"):
            if device.get(key):
                event.attributes[key] = str(device[key])
        for key, name in (("clientappused", "client_app"), ("resourcedisplayname", "resource"), ("isinteractive", "interactive"), ("conditionalaccessstatus", "conditional_access")):
            if r.get(key) not in (None, ""):
                event.attributes[name] = str(r[key])
        event.action = "sign-in"
        event.producer = "entra"
        event.event_id = str(first(r, "id", "originalrequestid") or record_hash_id("entra", raw))
        return [event]
