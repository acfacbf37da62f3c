"""Channels to the UEBA services with the caller's TLS and token settings.

Every command-line client and the Python clients open channels here, so that
TLS verification and the bearer token work the same everywhere:

    config = ChannelConfig.from_env()          # UEBA_TOKEN, UEBA_TLS_CA_FILE, ...
    with open_channel("query:50054", config) as channel:
        QueryServiceStub(channel).GetSummary(...)

TLS is used when a CA file, a client certificate or `tls=True` is given (the
system's roots verify the server then); otherwise the channel is plaintext,
which the servers accept on loopback only unless told otherwise.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import grpc

from ueba.auth.tls import channel_credentials
from ueba.callctx import ACTOR_METADATA


def _true(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ChannelConfig:
    token: str | None = None
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""  # client certificate, for mutual TLS
    key_file: str = ""
    server_name: str = ""  # the name to verify in the server's certificate, when it differs from the address
    actor: str = ""  # whom the calls act for when the server runs without tokens

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ChannelConfig":
        env = os.environ if environ is None else environ
        return cls(
            token=env.get("UEBA_TOKEN") or None,
            tls=_true(env.get("UEBA_TLS")),
            ca_file=env.get("UEBA_TLS_CA_FILE", ""),
            cert_file=env.get("UEBA_TLS_CLIENT_CERT_FILE", ""),
            key_file=env.get("UEBA_TLS_CLIENT_KEY_FILE", ""),
            server_name=env.get("UEBA_TLS_SERVER_NAME", ""),
            actor=env.get("UEBA_ACTOR", ""),
        )

    @property
    def secure(self) -> bool:
        return self.tls or bool(self.ca_file or self.cert_file)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.secure:
            return None
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("a client certificate needs both the certificate and the key file")
        return channel_credentials(self.ca_file, self.cert_file, self.key_file)

    def options(self) -> list[tuple[str, Any]]:
        if self.secure and self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []

    def metadata(self) -> tuple[tuple[str, str], ...]:
        token = (("authorization", f"Bearer {self.token}"),) if self.token else ()
        return token + ((ACTOR_METADATA, self.actor),) if self.actor else token


class _Metadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds fixed metadata (the bearer token, the actor) to every call that does not carry it already."""

    def __init__(self, metadata: Sequence[tuple[str, str]]):
        self.metadata = tuple(metadata)
        self.keys = {k for k, _ in metadata}

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        existing = tuple(details.metadata or ())
        extra = tuple(m for m in self.metadata if m[0] not in {k for k, _ in existing})
        return _CallDetails(details.method, details.timeout, existing + extra, details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


def open_channel(address: str, config: ChannelConfig | None = None, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A channel to `address` with the config's TLS and bearer token."""
    config = config or ChannelConfig()
    all_options = [*options, *config.options()]
    credentials = config.credentials()
    if credentials is None:
        channel = grpc.insecure_channel(address, options=all_options)
    else:
        channel = grpc.secure_channel(address, credentials, options=all_options)
    metadata = config.metadata()
    return grpc.intercept_channel(channel, _Metadata(metadata)) if metadata else channel


# --- command-line options -------------------------------------------------------------------

def add_channel_options(parser: argparse.ArgumentParser, token: bool = True) -> None:
    """--tls, --ca-file, --cert-file, --key-file, --server-name (and --token) with UEBA_* defaults."""
    env = ChannelConfig.from_env()
    group = parser.add_argument_group("connection security")
    if token:
        group.add_argument("--token", default=env.token, help="bearer token (default $UEBA_TOKEN)")
    group.add_argument("--tls", action="store_true", default=env.tls, help="use TLS, verifying with the system's roots ($UEBA_TLS)")
    group.add_argument("--ca-file", default=env.ca_file, help="PEM CA that signed the server certificate; implies --tls ($UEBA_TLS_CA_FILE)")
    group.add_argument("--cert-file", default=env.cert_file, help="client certificate for mutual TLS ($UEBA_TLS_CLIENT_CERT_FILE)")
    group.add_argument("--key-file", default=env.key_file, help="client key for mutual TLS ($UEBA_TLS_CLIENT_KEY_FILE)")
    group.add_argument("--server-name", default=env.server_name,
                       help="name to verify in the server certificate when it differs from the address ($UEBA_TLS_SERVER_NAME)")
    group.add_argument("--as", dest="actor", default=env.actor,
                       help="whom reviews and case changes are recorded for when the server has no tokens ($UEBA_ACTOR); "
                            "with tokens the token's name is recorded")


def channel_config(args: argparse.Namespace) -> ChannelConfig:
    """The ChannelConfig of parsed options (options absent from the parser fall back to the environment)."""
    env = ChannelConfig.from_env()
    pick = lambda name, default: getattr(args, name, default)  # noqa: E731
    return replace(
        env,
        token=pick("token", env.token) or None,
        tls=bool(pick("tls", env.tls)),
        ca_file=pick("ca_file", env.ca_file) or "",
        cert_file=pick("cert_file", env.cert_file) or "",
        key_file=pick("key_file", env.key_file) or "",
        server_name=pick("server_name", env.server_name) or "",
        actor=pick("actor", env.actor) or "",
    )
