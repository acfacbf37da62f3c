"""TLS on every port: certificates from files, verified by the clients, mutual TLS
when asked, reloaded when the files change; plaintext only on loopback or when
UEBA_PLAINTEXT says so."""

from __future__ import annotations

import json
import os
import socket
import ssl

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ueba.client.channel import ChannelConfig, open_channel
from ueba.client.ingest import IngestClient
from ueba.launcher import start_service
from ueba.settings import BaseSettings, SettingsError
from tests.support.ports import free_port
from ueba.v1 import common_pb2, ingest_pb2
from ueba.v1.ingest_pb2_grpc import IngestServiceStub

from .conftest import AUTH_ENV, QUIET, create, settings_for
from .pki import SERVER_NAME


def healthy(channel: grpc.Channel) -> bool:
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def tls_env(pki, **extra) -> dict[str, str]:
    return {"UEBA_TLS_CERT_FILE": str(pki.server_cert), "UEBA_TLS_KEY_FILE": str(pki.server_key), **extra}


# --- settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("listen", ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051", "ueba.example:50051"])
def test_plaintext_on_a_reachable_address_is_refused(listen):
    with pytest.raises(SettingsError, match="UEBA_LISTEN.*TLS is not configured"):
        BaseSettings.from_env({"UEBA_LISTEN": listen})
    assert BaseSettings.from_env({"UEBA_LISTEN": listen, "UEBA_PLAINTEXT": "true"}).plaintext


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.0.0.2:5", "[::1]:0", "localhost:50051"])
def test_loopback_stays_plain_by_default(listen):
    assert not BaseSettings.from_env({"UEBA_LISTEN": listen}).tls_enabled


def test_tls_settings_are_checked(pki, tmp_path):
    ok = BaseSettings.from_env({**tls_env(pki), "UEBA_LISTEN": "0.0.0.0:1"})
    assert ok.tls_enabled
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello")
    cases = [
        ({"UEBA_TLS_CERT_FILE": str(pki.server_cert)}, "set both"),
        ({**tls_env(pki), "UEBA_TLS_KEY_FILE": str(tmp_path / "missing.key")}, "UEBA_TLS_KEY_FILE"),
        ({**tls_env(pki), "UEBA_TLS_CERT_FILE": str(not_pem)}, "not a PEM"),
        ({**tls_env(pki), "UEBA_TLS_CLIENT_CA_FILE": str(pki.ca)}, "UEBA_TLS_REQUIRE_CLIENT_CERT"),
        ({"UEBA_TLS_REQUIRE_CLIENT_CERT": "true"}, "UEBA_TLS_CLIENT_CA_FILE"),
        ({**tls_env(pki), "UEBA_PLAINTEXT": "true"}, "choose one"),
        ({"UEBA_AUTH": "ldap"}, "UEBA_AUTH"),
        ({"UEBA_HEALTH_LISTEN": "50052"}, "UEBA_HEALTH_LISTEN"),
    ]
    for env, message in cases:
        with pytest.raises(SettingsError, match=message):
            BaseSettings.from_env(env)


# --- a real service process ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_ingest(pki, security_url, tmp_path_factory):
    """The ingest service as a process with TLS on its gRPC and OTLP ports."""
    log = tmp_path_factory.mktemp("tls") / "ingest.log"
    health_port = free_port()
    service = start_service("ingest", {
        "DATABASE_URL": security_url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
        "UEBA_OTLP_LISTEN": "127.0.0.1:0", "UEBA_HEALTH_LISTEN": f"127.0.0.1:{health_port}", **tls_env(pki),
    }, log_path=log)
    otlp_port = None
    for line in log.read_text().splitlines():
        if "OTLP listening" in line:
            otlp_port = json.loads(line)["port"]
    yield service, otlp_port, health_port
    service.stop()


@pytest.mark.e2e
def test_a_tls_service_talks_only_to_clients_that_verify_it(tls_ingest, pki):
    service, otlp_port, _ = tls_ingest
    assert otlp_port
    good = ChannelConfig(ca_file=str(pki.ca), server_name=SERVER_NAME)
    event = common_pb2.Event(event_id="tls-1", user="tls-user", type=common_pb2.EVENT_TYPE_LOGON)
    event.time.GetCurrentTime()
    with IngestClient(service.address, channel=good, max_attempts=0) as client:
        totals = client.send([event])
    assert totals.accepted + totals.duplicates == 1
    for port in (service.port, otlp_port):
        address = f"127.0.0.1:{port}"
        with open_channel(address, good) as ch:
            assert healthy(ch), f"TLS on port {port}"
        with grpc.insecure_channel(address) as ch:
            assert not healthy(ch), "a plaintext client must not get through"
        with open_channel(address, ChannelConfig(ca_file=str(pki.rogue_ca), server_name=SERVER_NAME)) as ch:
            assert not healthy(ch), "a server certificate from an untrusted CA must be refused"
        with open_channel(address, ChannelConfig(ca_file=str(pki.ca))) as ch:
            assert not healthy(ch), "the certificate names ueba.test, not 127.0.0.1"


@pytest.mark.e2e
def test_the_health_port_answers_health_in_plaintext_and_nothing_else(tls_ingest):
    service, _, health_port = tls_ingest
    with grpc.insecure_channel(f"127.0.0.1:{health_port}") as ch:
        assert healthy(ch)
        named = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="ueba.v1.IngestService"), timeout=5)
        assert named.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            list(reflect)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as refused:
            IngestServiceStub(ch).IngestEvents(ingest_pb2.EventBatch(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with grpc.insecure_channel(service.address) as ch:
        assert not healthy(ch), "the main port still needs TLS"


def test_the_health_port_shares_the_main_server_health(pki, security_url, security_engine):
    health_port = free_port()
    server, _address = _server("scorer", security_url, tls_env(pki, UEBA_HEALTH_LISTEN=f"127.0.0.1:{health_port}"),
                               security_engine)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as ch:
            assert healthy(ch)
            server.health.enter_graceful_shutdown()
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server.stop(0).wait()


# --- mutual TLS and rotation, in this process -----------------------------------------------------

def _server(service: str, url: str, env: dict[str, str], engine):
    server, port = create(service, settings_for(service, url, {**QUIET, "UEBA_METRICS_PORT": "-1", **env}), engine)
    server.start()
    return server, f"127.0.0.1:{port}"


def test_mutual_tls_requires_a_client_certificate_from_the_ca(pki, security_url, security_engine):
    server, address = _server("scorer", security_url, tls_env(
        pki, UEBA_TLS_CLIENT_CA_FILE=str(pki.ca), UEBA_TLS_REQUIRE_CLIENT_CERT="true"), security_engine)
    try:
        base = dict(ca_file=str(pki.ca), server_name=SERVER_NAME)
        with open_channel(address, ChannelConfig(**base, cert_file=str(pki.client_cert), key_file=str(pki.client_key))) as ch:
            assert healthy(ch)
        with open_channel(address, ChannelConfig(**base)) as ch:
            assert not healthy(ch), "no client certificate"
        with open_channel(address, ChannelConfig(**base, cert_file=str(pki.rogue_client_cert), key_file=str(pki.rogue_client_key))) as ch:
            assert not healthy(ch), "a client certificate from another CA"
    finally:
        server.stop(0).wait()


def _served_certificate(address: str, ca_file: str) -> bytes:
    host, _, port = address.rpartition(":")
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as sock, ctx.wrap_socket(sock, server_hostname=SERVER_NAME) as tls:
        return tls.getpeercert(binary_form=True)


def test_replacing_the_certificate_files_rotates_without_a_restart(pki, security_url, security_engine, tmp_path):
    from .pki import Authority

    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pki.server_cert.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())
    server, address = _server("profiles", security_url, {"UEBA_TLS_CERT_FILE": str(cert), "UEBA_TLS_KEY_FILE": str(key)}, security_engine)
    try:
        first = _served_certificate(address, str(pki.ca))
        # A new CA and certificate, swapped in the way Kubernetes updates a mounted Secret: by rename.
        new_ca = Authority.create("Next CA")
        new_cert, new_key = new_ca.issue("ueba server", dns=(SERVER_NAME,))
        new_ca_file = pki.write("next-ca.pem", new_ca.pem)
        for path, data in ((key, new_key), (cert, new_cert)):
            tmp = path.with_suffix(".new")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        second = _served_certificate(address, str(new_ca_file))
        assert second != first
        with open_channel(address, ChannelConfig(ca_file=str(new_ca_file), server_name=SERVER_NAME)) as ch:
            assert healthy(ch)
        with open_channel(address, ChannelConfig(ca_file=str(pki.ca), server_name=SERVER_NAME)) as ch:
            assert not healthy(ch), "new connections get the new certificate"
    finally:
        server.stop(0).wait()


def test_the_command_line_verifies_the_server_and_sends_its_token(pki, stack, security_url, security_engine, capsys):
    from ueba.cli.main import main

    server, address = _server("query", security_url, {**AUTH_ENV, **tls_env(pki)}, security_engine)
    try:
        token = stack.token("cli-tenant", "analyst", "cli-analyst")
        args = ["summary", "--address", address, "--ca-file", str(pki.ca), "--server-name", SERVER_NAME]
        assert main([*args, "--token", token, "-o", "json"]) == 0
        assert "range" in json.loads(capsys.readouterr().out)
        assert main(args) == 1  # no token
        assert "UNAUTHENTICATED" in capsys.readouterr().err
        assert main(["summary", "--address", address, "--token", token]) == 2  # plaintext to a TLS port: unreachable
    finally:
        server.stop(0).wait()
