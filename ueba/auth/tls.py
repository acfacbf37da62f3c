"""TLS credentials from PEM files, for servers and clients.

The server re-reads its certificate files when they change, on the next
handshake, so rotating a certificate is replacing the files (as Kubernetes does
when a mounted Secret changes): no restart, and existing connections keep the
certificate they started with.
"""

from __future__ import annotations

import logging
import os
import threading

import grpc

log = logging.getLogger(__name__)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class CertificateFiles:
    """The server's certificate, key and optional client CA, reloaded when a file changes."""

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str = ""):
        self.paths = tuple(p for p in (cert_file, key_file, client_ca_file) if p)
        self.cert_file, self.key_file, self.client_ca_file = cert_file, key_file, client_ca_file
        self._lock = threading.Lock()
        self._signature = self._stat()
        self.initial = self._load()

    def _stat(self) -> tuple:
        sig = []
        for path in self.paths:
            st = os.stat(path)  # follows symlinks: a Secret update swaps the ..data link
            sig.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(sig)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        ca = _read(self.client_ca_file) if self.client_ca_file else None
        return grpc.ssl_server_certificate_configuration([(_read(self.key_file), _read(self.cert_file))], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: a new configuration when the files changed, else None."""
        try:
            with self._lock:
                signature = self._stat()
                if signature == self._signature:
                    return None
                config = self._load()
                self._signature = signature
            log.info("TLS certificate files changed; new connections use them", extra={"cert": self.cert_file})
            return config
        except OSError as exc:  # mid-replacement: keep serving the previous certificate
            log.warning("cannot reload TLS certificate files", extra={"error": str(exc)})
            return None


def server_credentials(settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the UEBA_TLS_* settings; None when TLS is not configured."""
    if not settings.tls_cert_file:
        return None
    files = CertificateFiles(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
    return grpc.dynamic_ssl_server_credentials(
        files.initial, files.fetch, require_client_authentication=settings.tls_require_client_cert
    )


def channel_credentials(ca_file: str = "", cert_file: str = "", key_file: str = "") -> grpc.ChannelCredentials:
    """Client TLS: trust ca_file (default: the system's roots); present cert/key for mutual TLS."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file) if ca_file else None,
        private_key=_read(key_file) if key_file else None,
        certificate_chain=_read(cert_file) if cert_file else None,
    )
