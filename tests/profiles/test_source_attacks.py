"""Credential attacks of a simulated organisation through the built-in failed-logins profile,
in process: each is charged to its source, every account it tried is linked to it, and an
account whose password worked is the high-risk finding."""

from __future__ import annotations

from collections import defaultdict

from services.profiles.defaults import DEFAULT_PROFILES
from services.profiles.kinds import ProfileSpec, build_detector
from tests.profiles.simutil import records
from ueba.simulator import SimulationConfig, simulate
from ueba.simulator.labels import LABEL_KINDS


def failed_logins_profile():
    (p,) = [p for p in DEFAULT_PROFILES if p.kind == "failed_logins"]
    return build_detector(ProfileSpec(id="fl", name=p.name, kind=p.kind, risk_score=p.risk_score, parameters=p.parameters))


def latest(findings):
    """Each finding as last refreshed (a source's and a linked account's grow while the attack goes on)."""
    return list({f.dedup_key: f for f in findings}.values())


def test_brute_forces_and_sprays_are_charged_to_their_sources_with_each_account_linked():
    counts = {kind: 0 for kind in LABEL_KINDS} | {"brute_force": 3, "password_spray": 3}
    # A seed where two brute forces and the spray succeed.
    sim = simulate(SimulationConfig(users=60, days=10, seed=2, scenario_counts=counts))
    events = sorted(records(sim.events()), key=lambda e: (e.ts, e.event_id))
    found = latest(failed_logins_profile().process(events))
    by_source = defaultdict(list)
    for f in found:
        by_source[f.entity if f.entity_type == "ip" else f.evidence.get("source_entity", {}).get("entity")].append(f)
    attacks = defaultdict(list)
    for label in sim.labels:
        attacks[label.source].append(label)
    assert len(attacks) == 6
    successes = 0
    for source, labels in attacks.items():
        findings = by_source[source]
        (charged,) = [f for f in findings if f.entity_type == "ip"]
        pattern = "brute_force" if labels[0].kind == "brute_force" else "password_spray"
        assert (charged.user, charged.evidence["pattern"]) == ("", pattern), charged.description
        tried = {label.user for label in labels}
        linked = {f.user for f in findings if f.entity_type == "user" and f.risk_score < charged.risk_score}
        assert linked == tried
        if labels[0].kind == "brute_force":
            assert charged.evidence["count"] == labels[0].details["failures"]  # the true count, not the threshold
        cracked = {label.user for label in labels if label.details.get("succeeded")}
        high = {f.user for f in findings if f.evidence.get("success_event_id")}
        assert high == cracked and all(f.risk_score >= 70 for f in findings if f.evidence.get("success_event_id"))
        successes += len(high)
    # Nothing else in the organisation is charged to a source or raised on an account.
    assert set(by_source) == set(attacks) and successes == 3
