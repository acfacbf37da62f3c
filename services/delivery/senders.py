"""Sending one document to one destination: a signed webhook, a syslog message, an anomaly.log line."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
import urllib.error
import urllib.request
from typing import Any, Protocol

from services.delivery.cef import cef
from services.delivery.destinations import Destination
from ueba.anomaly_log import AnomalySink
from ueba.syslog import FACILITIES, SEVERITY_OF_LEVEL, SyslogTransport, message

SIGNATURE_HEADER = "X-UEBA-Signature"
TIMESTAMP_HEADER = "X-UEBA-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Statuses that say "later": the rest of 4xx says the request itself is wrong, and retrying cannot help.
_RETRYABLE = {408, 425, 429}


class DeliveryFailed(Exception):
    """The destination did not take the document; `permanent` when retrying cannot help."""

    def __init__(self, reason: str, permanent: bool = False, retry_after: float = 0.0):
        super().__init__(reason)
        self.permanent = permanent
        self.retry_after = retry_after


class Sender(Protocol):
    def send(self, document: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def body_of(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>": a receiver rejects replays older than it accepts."""
    return "sha256=" + hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _retry_after(error: urllib.error.HTTPError) -> float:
    try:
        return max(0.0, float(error.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0


class WebhookSender:
    def __init__(self, destination: Destination):
        opts = destination.options
        self.url = opts["url"]
        self.secret = destination.secret
        self.timeout = float(opts.get("timeout_seconds", 10))
        self.headers = {str(k): str(v) for k, v in opts.get("headers", {}).items()}
        if destination.authorization:
            self.headers["Authorization"] = destination.authorization
        self.context = ssl.create_default_context(cafile=opts.get("ca_file") or None)

    def send(self, document: dict[str, Any]) -> None:
        body = body_of(document)
        stamp = str(int(time.time()))
        headers = {
            **self.headers, "Content-Type": "application/json", "User-Agent": "ueba-delivery",
            IDEMPOTENCY_HEADER: document["event"]["id"], TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: signature(self.secret, stamp, body),
        }
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            permanent = 400 <= exc.code < 500 and exc.code not in _RETRYABLE
            raise DeliveryFailed(f"HTTP {exc.code}", permanent, _retry_after(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None

    def close(self) -> None:
        pass


class SyslogSender:
    def __init__(self, destination: Destination):
        opts = destination.options
        self.format = opts.get("format", "json")
        self.facility = FACILITIES[opts.get("facility", "local0")]
        self.app_name = opts.get("app_name", "ueba")
        self.transport = SyslogTransport(opts["address"], opts.get("framing", "octet-counting"), opts.get("ca_file", ""),
                                         float(opts.get("timeout_seconds", 10)))

    def send(self, document: dict[str, Any]) -> None:
        text = cef(document) if self.format == "cef" else body_of(document).decode("utf-8")
        payload = message(text, severity=SEVERITY_OF_LEVEL[document["ueba"]["risk_level"]], facility=self.facility,
                          app_name=self.app_name, msg_id=document["event"]["action"])
        try:
            self.transport.send(payload)
        except OSError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self.transport.close()


class LogSender:
    def __init__(self, destination: Destination):
        self.sink = AnomalySink(destination.options.get("target", ""), app_name="ueba-delivery")

    def send(self, document: dict[str, Any]) -> None:
        try:
            self.sink.write([body_of(document).decode("utf-8")])
        except OSError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self.sink.close()


def sender_for(destination: Destination) -> Sender:
    return {"webhook": WebhookSender, "syslog": SyslogSender, "log": LogSender}[destination.type](destination)
