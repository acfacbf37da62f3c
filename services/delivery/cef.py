"""A finding document as ArcSight CEF, which QRadar, Sentinel and Elastic read from syslog as is."""

from __future__ import annotations

from datetime import datetime
from typing import Any

VERSION = "1"
_LABELS = (("cs1", "incident"), ("cs2", "tenant"), ("cs3", "entityType"), ("cs4", "riskLevel"))


def _header(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _value(value: Any) -> str:
    return (str(value).replace("\\", "\\\\").replace("=", "\\=").replace("\r\n", "\\n")
            .replace("\n", "\\n").replace("\r", "\\r"))


def severity(score: int) -> int:
    """CEF's 0-10 from the 1-100 score, on the levels' edges: low < 4, medium 4-6, high 7-8, critical 9-10."""
    return max(0, min(10, score // 10))


def _millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def cef(document: dict[str, Any]) -> str:
    event, ueba = document["event"], document["ueba"]
    rule = document.get("rule", {})
    signature = f"{ueba['kind']}:{rule.get('id') or rule.get('category') or event['action']}"
    name = rule.get("name") or document["message"]
    ext: list[tuple[str, Any]] = [
        ("rt", _millis(document["@timestamp"])), ("externalId", event["id"]), ("act", event["action"]),
        ("cat", event["dataset"]), ("msg", document["message"]),
    ]
    if "user" in document:
        ext.append(("suser", document["user"]["name"]))
    source = document.get("source", {})
    if "ip" in source:
        ext.append(("src", source["ip"]))
    if "address" in source:
        ext.append(("shost", source["address"]))
    if "start" in event:
        ext += [("start", _millis(event["start"])), ("end", _millis(event["end"]))]
    values = {"cs1": ueba.get("incident_id", ""), "cs2": ueba["tenant"], "cs3": ueba["entity"]["type"],
              "cs4": ueba["risk_level"]}
    for key, label in _LABELS:
        if values[key]:
            ext += [(key, values[key]), (f"{key}Label", label)]
    ext += [("cn1", int(event["risk_score"])), ("cn1Label", "riskScore")]
    head = "|".join(_header(v) for v in ("CEF:0", "UEBA", "UEBA", VERSION, signature, name,
                                         severity(int(event["severity"]))))
    return head + "|" + " ".join(f"{k}={_value(v)}" for k, v in ext)
