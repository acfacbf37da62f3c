"""ProfileService against a real server on port 0 and a real database."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from sqlalchemy import func, insert, select

from services.profiles.defaults import DEFAULT_PROFILES
from services.profiles.server import create_server
from services.profiles.settings import ProfilesSettings
from tests.profiles.dbutil import insert_events
from tests.profiles.factory import event
from ueba.db import create_db_engine
from ueba.risk import bounded_risk
from ueba.store.schema import anomalies, audit_log
from ueba.v1 import common_pb2, profiles_pb2, profiles_pb2_grpc

P = profiles_pb2


@pytest.fixture
def tenant():
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def engine(own_engine):
    """This module's own database (it creates event partitions), not the session's."""
    return own_engine


@pytest.fixture
def api(own_database_url, tenant):
    yield from serve(own_database_url, tenant)


def serve(url: str, tenant: str, **settings_overrides):
    settings = ProfilesSettings.from_env({}, database_url=url, tenant=tenant, evaluate=False, metrics_port=-1,
                                         **settings_overrides)
    engine = create_db_engine(url, pool_size=2)
    server, port = create_server(settings, engine)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield profiles_pb2_grpc.ProfileServiceStub(channel)
    channel.close()
    server.stop(0).wait()
    engine.dispose()


def params(**values) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def new_profile(**overrides) -> P.Profile:
    fields = dict(name="Brute force", kind=P.PROFILE_KIND_FAILED_LOGINS, enabled=True, risk_score=65,
                  parameters=params(count=5, interval_seconds=300))
    fields.update(overrides)
    return P.Profile(**fields)


def audit_rows(engine, tenant):
    with engine.connect() as conn:
        return list(conn.execute(select(audit_log).where(audit_log.c.tenant == tenant).order_by(audit_log.c.id)))


def error_of(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(*args)
    return err.value


def test_defaults_are_seeded_once_and_listed_in_pages(api, engine, tenant):
    first = api.ListProfiles(P.ListProfilesRequest(page_size=4))
    assert len(first.profiles) == 4 and first.next_page_token
    names = [p.name for p in first.profiles]
    token = first.next_page_token
    while token:
        page = api.ListProfiles(P.ListProfilesRequest(page_size=4, page_token=token))
        names += [p.name for p in page.profiles]
        token = page.next_page_token
    assert sorted(names) == sorted(d.name for d in DEFAULT_PROFILES)
    assert all(p.risk_score > 0 and p.dimension for p in first.profiles)
    only = api.ListProfiles(P.ListProfilesRequest(kind=P.PROFILE_KIND_PROXIMITY))
    assert [p.name for p in only.profiles] == ["Impossible travel"]
    seeds = [r for r in audit_rows(engine, tenant) if r.action == "profile.seed"]
    assert len(seeds) == len(DEFAULT_PROFILES)
    assert error_of(api.ListProfiles, P.ListProfilesRequest(page_token="%%%")).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_create_get_update_enable_delete_with_audit(api, engine, tenant):
    created = api.CreateProfile(P.CreateProfileRequest(profile=new_profile(applications=["VPN"])))
    assert created.id and created.kind == P.PROFILE_KIND_FAILED_LOGINS and created.dimension == "authentication"
    # Defaults filled in for the parameters not given.
    assert created.parameters["count"] == 5 and created.parameters["spray_users"] == 5
    assert created.parameters["spray_quantile"] == 0.995 and created.parameters["spray_baseline_days"] == 30
    assert api.GetProfile(P.GetProfileRequest(id=created.id)) == created

    changed = new_profile(id=created.id, risk_score=90, parameters=params(count=8))
    updated = api.UpdateProfile(P.UpdateProfileRequest(profile=changed, update_mask=["risk_score", "parameters"]))
    assert updated.risk_score == 90 and updated.parameters["count"] == 8 and updated.name == "Brute force"
    assert list(updated.applications) == ["VPN"]

    off = api.SetProfileEnabled(P.SetProfileEnabledRequest(id=created.id, enabled=False))
    assert off.enabled is False
    api.DeleteProfile(P.DeleteProfileRequest(id=created.id))
    assert error_of(api.GetProfile, P.GetProfileRequest(id=created.id)).code() == grpc.StatusCode.NOT_FOUND

    trail = [(r.action, r.target, r.actor) for r in audit_rows(engine, tenant) if r.action != "profile.seed"]
    assert trail == [(a, created.id, "anonymous") for a in ("profile.create", "profile.update", "profile.disable", "profile.delete")]
    update = [r for r in audit_rows(engine, tenant) if r.action == "profile.update"][0]
    assert update.details["changes"]["risk_score"] == {"from": 65, "to": 90}
    assert all(r.at is not None for r in audit_rows(engine, tenant))


@pytest.mark.parametrize("profile,message", [
    (new_profile(parameters=params(count=0)), "parameters.count: must be a positive integer"),
    (new_profile(parameters=params(count=1.5)), "parameters.count: must be a positive integer"),
    (new_profile(parameters=params(colour="red")), "parameters.colour: unknown parameter"),
    (new_profile(risk_score=0), "risk_score: must be from 1 to 100"),
    (new_profile(risk_score=101), "risk_score: must be from 1 to 100"),
    (new_profile(name=""), "name: required"),
    (new_profile(kind=P.PROFILE_KIND_UNSPECIFIED), "kind: required"),
    (new_profile(dimension="mood"), "dimension: must be one of"),
    (new_profile(kind=P.PROFILE_KIND_PROXIMITY, parameters=params(trusted_networks=["not-a-net"])),
     "parameters.trusted_networks[0]: 'not-a-net' is not a CIDR network"),
])
def test_create_rejects_bad_definitions_naming_the_field(api, engine, tenant, profile, message):
    err = error_of(api.CreateProfile, P.CreateProfileRequest(profile=profile))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(message)
    assert not [r for r in audit_rows(engine, tenant) if r.action == "profile.create"]


def test_update_and_lookup_errors(api):
    created = api.CreateProfile(P.CreateProfileRequest(profile=new_profile()))
    err = error_of(api.UpdateProfile, P.UpdateProfileRequest(profile=new_profile(id=created.id), update_mask=["kind"]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "kind" in err.details()
    err = error_of(api.UpdateProfile, P.UpdateProfileRequest(
        profile=new_profile(id=created.id, parameters=params(count=-1)), update_mask=["parameters"]))
    assert err.details() == "parameters.count: must be a positive integer"
    err = error_of(api.CreateProfile, P.CreateProfileRequest(profile=new_profile()))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    err = error_of(api.UpdateProfile, P.UpdateProfileRequest(profile=new_profile(id=created.id, name="Failed logins"),
                                                             update_mask=["name"]))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    missing = str(uuid.uuid4())
    assert error_of(api.GetProfile, P.GetProfileRequest(id=missing)).code() == grpc.StatusCode.NOT_FOUND
    assert error_of(api.DeleteProfile, P.DeleteProfileRequest(id="nonsense")).code() == grpc.StatusCode.NOT_FOUND
    assert error_of(api.GetProfile, P.GetProfileRequest()).code() == grpc.StatusCode.INVALID_ARGUMENT


def ts(dt: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(dt)
    return t


def test_preview_runs_a_definition_over_the_past_and_writes_nothing(api, engine, own_database_url, tenant):
    events = [event("pia", "logon", i * 20, outcome="failure") for i in range(12)]
    events += [event("quin", "logon", 5000 + i * 20, outcome="failure") for i in range(3)]
    insert_events(own_database_url, events, tenant=tenant)
    start, end = events[0].time - timedelta(hours=1), events[-1].time + timedelta(hours=1)

    def count_anomalies():
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(anomalies).where(anomalies.c.tenant == tenant)).scalar()

    before = count_anomalies()
    got = api.PreviewProfile(P.PreviewProfileRequest(
        profile=new_profile(name="", parameters=params(count=5, interval_seconds=600, spray_users=0)),
        range=common_pb2.TimeRange(start=ts(start), end=ts(end))))
    assert got.events_examined == 15 and got.total_anomalies == 1
    (a,) = got.anomalies
    assert a.user == "pia" and a.source == common_pb2.ANOMALY_SOURCE_RULE and a.risk_level == common_pb2.RISK_LEVEL_MEDIUM
    assert a.evidence["count"] == 5
    assert count_anomalies() == before
    # A lower threshold over the same past raises more, and max_anomalies caps what comes back.
    got = api.PreviewProfile(P.PreviewProfileRequest(
        profile=new_profile(parameters=params(count=3, interval_seconds=600, spray_users=0)),
        range=common_pb2.TimeRange(start=ts(start), end=ts(end)), max_anomalies=1))
    assert got.total_anomalies == 2 and len(got.anomalies) == 1  # pia once per window, and quin
    err = error_of(api.PreviewProfile, P.PreviewProfileRequest(profile=new_profile()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("range.start")
    err = error_of(api.PreviewProfile, P.PreviewProfileRequest(
        profile=new_profile(parameters=params(count=0)), range=common_pb2.TimeRange(start=ts(start))))
    assert err.details().startswith("parameters.count")


def test_preview_shows_a_growing_finding_once_with_its_whole_activity(api, own_database_url, tenant):
    mb, day = 1024 * 1024, 86400
    history = [event("ria", "app_access", d * day, application="SharePoint", department="sales") for d in range(9)]
    uploads = [event("ria", "file_upload", 9 * day + i * 60, application="gofile", bytes=30 * mb, department="sales")
               for i in range(4)]
    insert_events(own_database_url, history + uploads, tenant=tenant)
    got = api.PreviewProfile(P.PreviewProfileRequest(
        profile=new_profile(name="", kind=P.PROFILE_KIND_DATA_EXFILTRATION,
                            parameters=params(min_bytes=100 * mb, novel_min_bytes=mb)),
        range=common_pb2.TimeRange(start=ts(uploads[0].time - timedelta(hours=1)),
                                   end=ts(uploads[-1].time + timedelta(hours=1)))))
    # Raised again with each upload (a refresh of one finding): one anomaly, as the store keeps it.
    assert got.total_anomalies == 1
    (a,) = got.anomalies
    assert a.user == "ria" and a.evidence["bytes"] == 120 * mb


def store_anomalies(engine, tenant: str, user: str, rows: list[tuple[int, str, int]]) -> None:
    """Anomalies of `user` as (risk score, status, days ago)."""
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        for i, (score, status, days_ago) in enumerate(rows):
            conn.execute(insert(anomalies).values(
                tenant=tenant, user_name=user, source="rule", profile_id="p", profile_name="p", profile_kind="failed_logins",
                risk_score=score, description="d", dimension="authentication", time=now - timedelta(days=days_ago),
                window_start=now - timedelta(days=days_ago), window_end=now - timedelta(days=days_ago),
                status=status, dedup_key=f"{user}-k{i}"))


def test_user_risk_counts_open_anomalies_in_the_window(api, engine, tenant):
    store_anomalies(engine, tenant, "rae", [(90, "new", 1), (40, "new", 2), (30, "resolved", 3), (70, "new", 45)])
    risk = api.GetUserRisk(P.GetUserRiskRequest(user="CORP\\Rae"))
    assert risk.user == "rae" and risk.total_points == 130 and risk.open_anomalies == 2
    assert risk.risk == bounded_risk([90, 40]) and risk.risk_level == common_pb2.RISK_LEVEL_CRITICAL
    nobody = api.GetUserRisk(P.GetUserRiskRequest(user="nobody@corp.com"))
    assert nobody.total_points == 0 and nobody.risk_level == common_pb2.RISK_LEVEL_LOW
    assert error_of(api.GetUserRisk, P.GetUserRiskRequest()).code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("mode,stored,typed", [
    ("strip_domain", "alice", "alice@corp"),
    ("strip_domain", "alice", "CORP\\Alice"),
    ("qualified", "alice@corp", "alice@corp"),
    ("qualified", "alice@corp", "CORP\\Alice"),
])
def test_user_risk_finds_the_user_as_ingest_stored_it_in_either_name_mode(own_database_url, engine, tenant, mode, stored, typed):
    # `stored` is what ingest writes in `mode`; in qualified mode the domain stays, so
    # stripping it (as every service but ingest once did) would find nobody.
    store_anomalies(engine, tenant, stored, [(60, "new", 1)])
    store_anomalies(engine, tenant, "alice@partner", [(90, "new", 1)])
    for api in serve(own_database_url, tenant, user_name_mode=mode):
        risk = api.GetUserRisk(P.GetUserRiskRequest(user=typed))
    assert (risk.user, risk.open_anomalies, risk.total_points) == (stored, 1, 60)
