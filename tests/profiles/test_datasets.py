"""The profiles on real logs (../shared/datasets), fed in-process through the parsers: what a
trusted network changes on the Azure Sentinel training lab's sign-ins."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import grpc
import psycopg
import pytest
from google.protobuf import struct_pb2

from services.profiles.defaults import DEFAULT_PROFILES
from services.profiles.kinds import ProfileSpec, build_detector
from services.profiles.kinds.trust import TrustedNetworks
from tests.profiles.simutil import records
from tests.agents.helpers import ingest_env
from ueba.cli.main import main
from ueba.db import libpq_url
from ueba.launcher import start_service
from ueba.parsers.files import read_file
from ueba.v1 import profiles_pb2 as P
from ueba.v1 import profiles_pb2_grpc

pytestmark = pytest.mark.datasets

CAUGHT_UP = """SELECT count(*) > 0 AND bool_and(pg_visible_in_snapshot((SELECT max(txid) FROM events), snapshot::pg_snapshot))
               FROM profile_cursors"""

LAB_ADDRESS = "175.45.176.99"  # every sign-in of the lab's file: adelev, Azor, IL
LAB_NETWORK = "175.45.176.0/24"

# Address-based profiles an analyst would write for this tenant, on top of the built-in ones.
LAB_PROFILES = (
    ("Risky countries (IL listed)", "risky_countries", {"countries": ["IL", "KP"]}),
    ("Sign-ins by address", "custom_threshold", {"filter": {"event_type": "logon"}, "threshold": 10,
                                                 "interval_seconds": 3600, "group_by": "source_ip"}),
    ("Sign-ins from IL", "custom_threshold", {"filter": {"event_type": "logon", "country": "IL"}, "threshold": 5,
                                              "interval_seconds": 3600}),
)


def lab_events(datasets):
    report = read_file(datasets / "azure-sentinel-training-lab" / "sign-in_adelete.csv")
    events = sorted(records(report.events), key=lambda e: e.ts)
    assert len(events) == 56 and {e.source_ip for e in events} == {LAB_ADDRESS}
    return events


def run(events, trusted_networks: list[str]) -> Counter:
    """Findings per profile name of the built-in and the lab's profiles over the events."""
    specs = [(p.name, p.kind, dict(p.parameters)) for p in DEFAULT_PROFILES] + list(LAB_PROFILES)
    found: Counter = Counter()
    for name, kind, params in specs:
        if trusted_networks and "trusted_networks" in {p.name for p in build_detector(_spec(name, kind, params)).parameters}:
            params = {**params, "trusted_networks": trusted_networks}
        detector = build_detector(_spec(name, kind, params))
        found[name] += len({a.dedup_key for a in detector.process(events)})
    return +found


def _spec(name, kind, params) -> ProfileSpec:
    return ProfileSpec(id=f"p-{name}", name=name, kind=kind, risk_score=50, parameters=params)


def test_a_trusted_network_silences_every_address_based_profile_on_the_sign_in_lab(datasets):
    events = lab_events(datasets)
    untrusted = run(events, [])
    print(f"\nsign-in lab, nothing trusted: {dict(untrusted)}")
    assert untrusted["Risky countries (IL listed)"] == 1
    assert untrusted["Sign-ins by address"] >= 1 and untrusted["Sign-ins from IL"] >= 1
    # The lab's address in a profile's trusted networks, or marked trusted by ingest
    # (UEBA_TRUSTED_NETWORKS): every address-based profile is silent for it.
    in_profiles = run(events, [LAB_NETWORK])
    office = TrustedNetworks([LAB_NETWORK])
    marked = run([replace(e, trusted_source=e.source_ip in office) for e in events], [])
    print(f"sign-in lab, {LAB_NETWORK} trusted in the profiles: {dict(in_profiles)}; marked by ingest: {dict(marked)}")
    assert in_profiles == marked == Counter()


@pytest.mark.e2e
@pytest.mark.parametrize("trusted", [False, True], ids=["nothing trusted", "ingest trusts the lab's network"])
def test_ingests_trusted_networks_silence_the_address_profiles_of_the_running_service(datasets, migrated_databases, tmp_path,
                                                                                       capsys, trusted):
    """The same through a real ingest (UEBA_TRUSTED_NETWORKS marks the events) and profiles service."""
    name, url = migrated_databases.new("ueba_lab")
    ingest = profiles = None
    try:
        extra = {"UEBA_TRUSTED_NETWORKS": LAB_NETWORK} if trusted else {}
        ingest = start_service("ingest", ingest_env(url, **extra), log_path=tmp_path / "ingest.log")
        profiles = start_service("profiles", {"DATABASE_URL": url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
                                              "UEBA_PROFILES_POLL_SECONDS": "0.2"}, log_path=tmp_path / "profiles.log")
        with grpc.insecure_channel(profiles.address) as channel:
            api = profiles_pb2_grpc.ProfileServiceStub(channel)
            for title, kind, params in LAB_PROFILES:
                parameters = struct_pb2.Struct()
                parameters.update(params)
                api.CreateProfile(P.CreateProfileRequest(profile=P.Profile(
                    name=title, kind=getattr(P, f"PROFILE_KIND_{kind.upper()}"), enabled=True, risk_score=50,
                    parameters=parameters)))
        path = datasets / "azure-sentinel-training-lab" / "sign-in_adelete.csv"
        assert main(["ship", "--address", ingest.address, "--state-dir", str(tmp_path), "--no-progress", str(path)]) == 0
        capsys.readouterr()
        with psycopg.connect(libpq_url(url), autocommit=True) as pg:
            deadline = time.monotonic() + 120
            while not pg.execute(CAUGHT_UP).fetchone()[0]:
                assert time.monotonic() < deadline, "the profiles service did not read every event"
                time.sleep(0.3)
            marked = pg.execute("SELECT count(*) FILTER (WHERE trusted_source), count(*) FROM events").fetchone()
            found = Counter(dict(pg.execute("SELECT profile_name, count(*) FROM anomalies GROUP BY 1").fetchall()))
    finally:
        for service in (profiles, ingest):
            if service is not None:
                service.stop()
        migrated_databases.drop(name)
    print(f"\nsign-in lab through the services, {'trusted' if trusted else 'untrusted'}: events marked {marked}, "
          f"findings {dict(found)}")
    assert marked == ((56 if trusted else 0), 56)
    if trusted:
        assert found == Counter()
    else:
        assert {title for title, _, _ in LAB_PROFILES} <= set(found)
