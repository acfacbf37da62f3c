"""Real receivers the delivery tests send to: a webhook that checks signatures and fails on
purpose, and a syslog TCP listener that reads RFC 6587 octet-counted frames."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "test-webhook-secret"


@dataclass
class Received:
    key: str
    body: bytes
    at: float  # time.time()


@dataclass
class WebhookReceiver:
    """Fails the first `fail_first` requests (503) and then a `fail_ratio` share at random;
    answers `status` to the rest once their signature checks out, 401 when it does not."""

    fail_first: int = 0
    fail_ratio: float = 0.0
    status: int = 200
    delay: float = 0.0
    requests: int = 0
    bad_signatures: int = 0
    accepted: list[Received] = field(default_factory=list)
    failed_keys: list[str] = field(default_factory=list)
    first_failure: dict[str, float] = field(default_factory=dict)  # key -> time.time() of its first failure
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=lambda: random.Random(17))

    def __post_init__(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver._handle(self, body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _answer(self, handler, code: int) -> None:
        handler.send_response(code)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _handle(self, handler, body: bytes) -> None:
        if self.delay:
            time.sleep(self.delay)
        stamp = handler.headers.get("X-UEBA-Timestamp", "")
        expected = "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        key = handler.headers.get("Idempotency-Key", "")
        with self.lock:
            self.requests += 1
            failing = self.requests <= self.fail_first or self.rng.random() < self.fail_ratio
            signed = hmac.compare_digest(expected, handler.headers.get("X-UEBA-Signature", ""))
            if not signed:
                self.bad_signatures += 1
            elif failing:
                self.failed_keys.append(key)
                self.first_failure.setdefault(key, time.time())
            elif self.status < 300:
                self.accepted.append(Received(key, body, time.time()))
        self._answer(handler, 401 if not signed else 503 if failing else self.status)

    def keys(self) -> list[str]:
        with self.lock:
            return [r.key for r in self.accepted]

    def documents(self) -> list[dict]:
        with self.lock:
            return [json.loads(r.body) for r in self.accepted]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SyslogTcpReceiver:
    """Collects the messages of every connection, octet-counted (RFC 6587) or newline-ended."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.messages: list[bytes] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"{'tls' if self.tls else 'tcp'}://localhost:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):  # a client that does not trust our certificate
                return
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except (ssl.SSLError, OSError):
                    return
                if not chunk:
                    return
                buffer += chunk
                buffer = self._frames(buffer)

    def _frames(self, buffer: bytes) -> bytes:
        while buffer:
            if buffer[:1].isdigit():
                length, sep, rest = buffer.partition(b" ")
                if not sep or len(rest) < int(length):
                    return buffer
                message, buffer = rest[:int(length)], rest[int(length):]
            else:
                message, sep, rest = buffer.partition(b"\n")
                if not sep:
                    return buffer
                buffer = rest
            with self.lock:
                self.messages.append(message)
        return buffer

    def wait_for(self, n: int, timeout: float = 20.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.sock.close()
