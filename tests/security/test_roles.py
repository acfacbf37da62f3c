"""Every RPC of every service, called with every role and with bad tokens.

A role gets PERMISSION_DENIED exactly where the role table (ueba/auth/roles.py)
says so; a missing, unknown, malformed or revoked token gets UNAUTHENTICATED
everywhere; health checking and reflection answer without a token.
"""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ueba.auth.roles import METHOD_ROLES, OPEN_PREFIXES, ROLES, missing_methods

from .conftest import AUTH_ENV, QUIET, mint, settings_for
from .rpcs import SERVICES, all_rpcs, call, code_of

RPCS = all_rpcs()


def test_every_method_of_every_service_has_roles():
    names = [n for group in SERVICES.values() for n in group]
    assert missing_methods(names) == []
    assert sorted(METHOD_ROLES) == sorted(r.path for r in RPCS), "the table names a method no service has"
    assert all(roles <= set(ROLES) and roles for roles in METHOD_ROLES.values())
    assert len(RPCS) == 47


def test_a_server_with_a_method_missing_from_the_table_does_not_start(monkeypatch, security_url, security_engine):
    from services.scorer.server import create_server
    from ueba.auth import roles

    monkeypatch.delitem(roles.METHOD_ROLES, "/ueba.v1.ScorerService/ListModels")
    with pytest.raises(RuntimeError, match="ListModels"):
        create_server(settings_for("scorer", security_url, {**AUTH_ENV, **QUIET}), security_engine)


@pytest.fixture(scope="module")
def role_tokens(stack):
    # A tenant of its own with no data, so that allowed calls stay cheap.
    return {role: stack.token("roles-tenant", role) for role in ROLES}


# What an allowed caller gets for an empty request: the methods below need a field
# (an id, a name, a batch's events) and say so; every other method answers.
NEEDS_A_FIELD = {
    "IngestEvents", "StreamEvents", "GetProfile", "CreateProfile", "UpdateProfile", "SetProfileEnabled", "DeleteProfile",
    "PreviewProfile", "GetUserRisk", "GetScoringRun", "GetAnomaly", "ListAnomalyEvents", "ReviewAnomalies", "GetUser", "GetUserTimeline",
    "AddIgnoredUser", "RemoveIgnoredUser", "GetEntity", "GetEntityTimeline", "GetIncident", "ReviewIncidents",
    "CreateSuppressionRule", "DeleteSuppressionRule", "OpenCase", "GetCase", "CommentCase", "UpdateCase", "CloseCase",
}


def empty_request_answer(rpc) -> grpc.StatusCode:
    return grpc.StatusCode.INVALID_ARGUMENT if rpc.name in NEEDS_A_FIELD else grpc.StatusCode.OK


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_each_role_is_allowed_exactly_what_the_table_says(stack, role_tokens, rpc):
    channel = stack.channel(rpc.service)
    got = {role: code_of(channel, rpc, token=role_tokens[role]) for role in ROLES}
    expected = {
        role: empty_request_answer(rpc) if role in METHOD_ROLES[rpc.path] else grpc.StatusCode.PERMISSION_DENIED
        for role in ROLES
    }
    assert got == expected


@pytest.fixture(scope="module")
def revoked_token(stack):
    token_id, secret = mint(stack.engine, "roles-tenant", "admin", "revoked-admin")
    from ueba.auth.tokens import revoke_token

    with stack.engine.begin() as conn:
        revoke_token(conn, token_id, "tests")
    return secret


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_missing_bad_and_revoked_tokens_are_unauthenticated(stack, revoked_token, rpc):
    channel = stack.channel(rpc.service)
    assert code_of(channel, rpc) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(channel, rpc, token="ueba_" + "x" * 43) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(channel, rpc, token=revoked_token) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(channel, rpc, metadata=(("authorization", "Basic dXNlcjpwYXNz"),)) == grpc.StatusCode.UNAUTHENTICATED


def test_revocation_takes_effect_within_the_cache_time(stack):
    from ueba.auth.tokens import revoke_token

    rpc = next(r for r in RPCS if r.name == "ListModels")
    token_id, secret = mint(stack.engine, "roles-tenant", "analyst", "soon-revoked")
    channel = stack.channel("scorer")
    assert code_of(channel, rpc, token=secret) == grpc.StatusCode.OK
    with stack.engine.begin() as conn:
        assert revoke_token(conn, token_id, "tests") is not None
    time.sleep(0.3)  # UEBA_AUTH_CACHE_SECONDS=0.2 in these tests (default 5)
    assert code_of(channel, rpc, token=secret) == grpc.StatusCode.UNAUTHENTICATED


def test_use_is_recorded_and_the_actor_is_the_token_name(stack):
    from sqlalchemy import select

    from ueba.store.schema import api_tokens, audit_log
    from ueba.v1 import profiles_pb2

    token_id, secret = mint(stack.engine, "actor-tenant", "admin", "alice-admin")
    rpc = next(r for r in RPCS if r.name == "CreateProfile")
    request = profiles_pb2.CreateProfileRequest(profile=profiles_pb2.Profile(
        name="actor check", kind=profiles_pb2.PROFILE_KIND_FAILED_LOGINS, risk_score=10,
    ))
    request.profile.parameters.update({"count": 5, "interval_seconds": 600})
    assert code_of(stack.channel("profiles"), rpc, request, token=secret) == grpc.StatusCode.OK
    with stack.engine.connect() as conn:
        used = conn.execute(select(api_tokens.c.last_used_at).where(api_tokens.c.id == token_id)).scalar_one()
        actors = conn.execute(select(audit_log.c.actor, audit_log.c.action).where(audit_log.c.tenant == "actor-tenant")).all()
    assert used is not None
    assert ("alice-admin", "profile.create") in [tuple(a) for a in actors]


def test_with_tokens_a_named_actor_in_the_metadata_is_ignored(stack):
    from sqlalchemy import select

    from ueba.store.schema import audit_log
    from ueba.v1 import query_pb2

    _token_id, secret = mint(stack.engine, "actor-tenant-2", "admin", "bob-admin")
    rpc = next(r for r in RPCS if r.name == "CreateSuppressionRule")
    request = query_pb2.CreateSuppressionRuleRequest(
        action=query_pb2.SUPPRESSION_ACTION_SUPPRESS, match=query_pb2.SuppressionMatch(profile="nothing"), reason="test")
    resp = call(stack.channel("query"), rpc, request, token=secret, metadata=(("x-ueba-actor", "mallory"),))
    assert resp.rule.created_by == "bob-admin"
    with stack.engine.connect() as conn:
        actors = conn.execute(select(audit_log.c.actor).where(
            audit_log.c.tenant == "actor-tenant-2", audit_log.c.action == "suppression.create")).scalars().all()
    assert actors == ["bob-admin"]


@pytest.mark.parametrize("service", list(SERVICES))
def test_health_and_reflection_need_no_token(stack, service):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = stack.channel(service)
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    listed = {s.name for s in answers[0].list_services_response.service}
    assert set(SERVICES[service]) <= listed
    assert all(p.startswith("/grpc.") for p in OPEN_PREFIXES)


@pytest.mark.parametrize("service", list(SERVICES))
def test_reflection_v1_answers_beside_v1alpha(stack, service):
    from grpc_reflection.v1alpha import reflection_pb2

    # v1 and v1alpha messages are the same on the wire: a v1 client sends exactly these bytes.
    info = stack.channel(service).stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    first = SERVICES[service][0]
    answers = list(info(iter([
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=first),
    ]), timeout=10))
    assert set(SERVICES[service]) <= {s.name for s in answers[0].list_services_response.service}
    assert answers[1].file_descriptor_response.file_descriptor_proto, answers[1]


@pytest.mark.parametrize("service", list(SERVICES))
def test_health_list_gives_every_service_status(stack, service):
    reply = health_pb2_grpc.HealthStub(stack.channel(service)).List(health_pb2.HealthListRequest(), timeout=10)
    statuses = {name: status.status for name, status in reply.statuses.items()}
    assert statuses == {name: health_pb2.HealthCheckResponse.SERVING for name in ("", *SERVICES[service])}
