"""The profiles on real logs (../shared/datasets), fed in-process through the parsers: what a
trusted network changes on the Azure Sentinel training lab's sign-ins."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from services.profiles.defaults import DEFAULT_PROFILES
from services.profiles.kinds import ProfileSpec, build_detector
from services.profiles.kinds.trust import TrustedNetworks
from tests.profiles.simutil import records
from ueba.parsers.files import read_file

pytestmark = pytest.mark.datasets

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
