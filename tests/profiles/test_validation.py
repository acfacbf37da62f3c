"""Request validation of ProfileService without sockets or a database (grpc_testing).

The engine points at a port where nothing listens: a request that reached the store would
end UNAVAILABLE, so each INVALID_ARGUMENT here was decided before any SQL. Errors are
mapped by `status_of`, the mapping the shared call interceptor applies.
"""

from __future__ import annotations

from datetime import datetime, timezone

import grpc
import grpc_testing
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from services.profiles.servicer import ProfileServicer
from services.profiles.settings import ProfilesSettings
from ueba import paging
from ueba.db import create_db_engine
from ueba.errors import status_of
from ueba.v1 import common_pb2, profiles_pb2

P = profiles_pb2
SERVICE = P.DESCRIPTOR.services_by_name["ProfileService"]
NOWHERE = "postgresql://nobody@127.0.0.1:9/nothing"


class _Mapped:
    """The servicer's methods as the interceptor runs them: domain errors become statuses."""

    def __init__(self, servicer):
        self._servicer = servicer

    def __getattr__(self, name):
        method = getattr(self._servicer, name)

        def call(request, context):
            try:
                return method(request, context)
            except Exception as exc:  # grpc_testing's context has no code(), which mapped_to_status reads
                context.abort(*status_of(exc, name))

        return call


@pytest.fixture(scope="module")
def server():
    settings = ProfilesSettings.from_env({}, database_url=NOWHERE, evaluate=False, seed_defaults=False, metrics_port=-1)
    engine = create_db_engine(NOWHERE, pool_size=1)
    yield grpc_testing.server_from_dictionary(
        {SERVICE: _Mapped(ProfileServicer(settings, engine))}, grpc_testing.strict_real_time()
    )
    engine.dispose()


def call(server, method: str, request) -> tuple[grpc.StatusCode, str]:
    rpc = server.invoke_unary_unary(SERVICE.methods_by_name[method], (), request, None)
    _, _, code, details = rpc.termination()
    return code, details


def seconds(value: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=value, nanos=nanos)


YEAR_9999 = 253_370_764_800
AN_HOUR_AGO = int(datetime.now(timezone.utc).timestamp()) - 3600


def brute_force(**overrides) -> P.Profile:
    params = struct_pb2.Struct()
    params.update({"count": 5, "interval_seconds": 300})
    fields = dict(name="Brute force", kind=P.PROFILE_KIND_FAILED_LOGINS, risk_score=65, parameters=params)
    fields.update(overrides)
    return P.Profile(**fields)


INVALID = [
    ("PreviewProfile", P.PreviewProfileRequest(profile=brute_force(), range=common_pb2.TimeRange(start=seconds(YEAR_9999))),
     "range.start: seconds"),
    ("PreviewProfile", P.PreviewProfileRequest(profile=brute_force(), range=common_pb2.TimeRange(start=seconds(0, -5))),
     "range.start: nanos"),
    ("PreviewProfile", P.PreviewProfileRequest(
        profile=brute_force(), range=common_pb2.TimeRange(start=seconds(1_700_000_000), end=seconds(1_700_000_000, -5))),
     "range.end: nanos"),
    ("PreviewProfile", P.PreviewProfileRequest(
        profile=brute_force(), range=common_pb2.TimeRange(start=seconds(1_700_000_100), end=seconds(1_700_000_000))),
     "range: start must be before end"),
    ("PreviewProfile", P.PreviewProfileRequest(profile=brute_force()), "range.start: required"),
    ("PreviewProfile", P.PreviewProfileRequest(
        profile=brute_force(), range=common_pb2.TimeRange(start=seconds(1_600_000_000), end=seconds(1_700_000_000))),
     "range: at most 90 days"),
    ("PreviewProfile", P.PreviewProfileRequest(
        profile=brute_force(), range=common_pb2.TimeRange(start=seconds(AN_HOUR_AGO)), max_anomalies=-1),
     "max_anomalies: must not be negative"),
    ("ListProfiles", P.ListProfilesRequest(page_token="after:Brute force"), "page_token: not a token this service issued"),
    ("ListProfiles", P.ListProfilesRequest(page_token="x" * 5000), "page_token: too long"),
    ("ListProfiles", P.ListProfilesRequest(page_size=-1), "page_size: must not be negative"),
    ("GetProfile", P.GetProfileRequest(), "id: required"),
    ("DeleteProfile", P.DeleteProfileRequest(), "id: required"),
    ("SetProfileEnabled", P.SetProfileEnabledRequest(), "id: required"),
    ("UpdateProfile", P.UpdateProfileRequest(profile=brute_force()), "profile.id: required"),
    ("UpdateProfile", P.UpdateProfileRequest(profile=brute_force(id="00000000-0000-0000-0000-000000000001"),
                                             update_mask=["kind"]), "update_mask[0]: kind cannot change"),
    ("UpdateProfile", P.UpdateProfileRequest(profile=brute_force(id="00000000-0000-0000-0000-000000000001"),
                                             update_mask=["owner"]), "update_mask[0]: unknown field 'owner'"),
    ("CreateProfile", P.CreateProfileRequest(profile=brute_force(risk_score=0)), "risk_score: must be from 1 to 100"),
    ("CreateProfile", P.CreateProfileRequest(profile=brute_force(name="a\x00b")), "name: contains a NUL character"),
    ("CreateProfile", P.CreateProfileRequest(profile=brute_force(kind=0)), "kind: required"),
    ("GetUserRisk", P.GetUserRiskRequest(), "user: required"),
    ("GetUserRisk", P.GetUserRiskRequest(user="CORP\\"), "user: required"),
    ("GetUserRisk", P.GetUserRiskRequest(user="al\x00ice"), "user: contains a NUL character"),
]


@pytest.mark.parametrize("method,request_,message", INVALID, ids=[f"{m}-{msg.split(':')[0]}" for m, _, msg in INVALID])
def test_bad_requests_are_invalid_argument_naming_the_field_before_any_sql(server, method, request_, message):
    code, details = call(server, method, request_)
    assert (code, details[: len(message)]) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_a_token_of_another_filter_is_refused(server):
    # A token well formed for "every kind" is not one for "failed logins only".
    every_kind = paging.fingerprint("default", "profiles by name", None, False)
    token = paging.encode(every_kind, paging.PageToken(["Brute force"], datetime.now(timezone.utc)))
    code, details = call(server, "ListProfiles", P.ListProfilesRequest(kind=P.PROFILE_KIND_FAILED_LOGINS, page_token=token))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("page_token: belongs to a different query")


def test_an_id_that_is_no_uuid_is_not_found_without_sql(server):
    code, details = call(server, "GetProfile", P.GetProfileRequest(id="nonsense"))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "profile nonsense not found")


def test_a_request_that_reaches_the_absent_store_is_unavailable_with_no_sql_in_the_status(server):
    # The proof that the cases above never touched the store: this one does.
    code, details = call(server, "GetProfile", P.GetProfileRequest(id="00000000-0000-0000-0000-000000000001"))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "SELECT" not in details and "Traceback" not in details and "nobody" not in details
