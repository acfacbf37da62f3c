"""Syslog as RFC 5424 messages over UDP (RFC 5426), TCP (RFC 6587) or TLS (RFC 5425)."""

from __future__ import annotations

import os
import select
import socket
import ssl
from datetime import datetime, timezone
from urllib.parse import urlsplit

FACILITIES = {
    "kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
    **{f"local{n}": 16 + n for n in range(8)},
}
# RFC 5424 severities by risk level: what a SIEM's alerting sorts on.
SEVERITY_OF_LEVEL = {"critical": 2, "high": 3, "medium": 4, "low": 5}
FRAMINGS = ("octet-counting", "lf")
TRANSPORTS = ("udp", "tcp", "tls")
_NIL = "-"


def _field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, or the nil value."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or _NIL


def message(body: str, *, severity: int, facility: int, app_name: str, msg_id: str,
            hostname: str | None = None, at: datetime | None = None) -> bytes:
    """One RFC 5424 message without structured data; the body as UTF-8 behind a BOM, as the RFC asks."""
    at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    stamp = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    header = (f"<{facility * 8 + severity}>1 {stamp} {_field(hostname or socket.gethostname(), 255)} "
              f"{_field(app_name, 48)} {_field(str(os.getpid()), 128)} {_field(msg_id, 32)} {_NIL} ")
    return header.encode("ascii") + b"\xef\xbb\xbf" + body.encode("utf-8")


class SyslogTransport:
    """A connection to one collector, opened on first use and again after a failure.

    send() raises OSError when the collector cannot take the message; the caller retries.
    """

    def __init__(self, address: str, framing: str = "octet-counting", ca_file: str = "", timeout: float = 10.0):
        parts = urlsplit(address)
        if parts.scheme not in TRANSPORTS or not parts.hostname or not parts.port:
            raise ValueError(f"{address!r}: expected udp://, tcp:// or tls://host:port")
        if framing not in FRAMINGS:
            raise ValueError(f"framing {framing!r}: expected one of {', '.join(FRAMINGS)}")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.framing, self.ca_file, self.timeout = framing, ca_file, timeout
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self.scheme == "udp":
            family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0][0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.connect((self.host, self.port))
            return sock
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self.scheme == "tls":
            context = ssl.create_default_context(cafile=self.ca_file or None)
            sock = context.wrap_socket(sock, server_hostname=self.host)
        return sock

    def frame(self, payload: bytes) -> bytes:
        if self.scheme == "udp":
            return payload
        if self.framing == "lf":
            return payload.replace(b"\n", b" ") + b"\n"
        return f"{len(payload)} ".encode("ascii") + payload

    def _peer_closed(self) -> bool:
        """A stream the collector closed while idle: sending on it would lose the message."""
        if self.scheme == "udp" or self._sock is None:
            return False
        readable, _, _ = select.select([self._sock], [], [], 0)
        if not readable:
            return False
        try:
            return self._sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ssl.SSLError):
            return True

    def send(self, payload: bytes) -> None:
        try:
            if self._peer_closed():
                self.close()
            if self._sock is None:
                self._sock = self._connect()
            self._sock.sendall(self.frame(payload))
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
