"""Trusted networks: every profile that looks at addresses leaves them out, through one check
(README: "Trusted networks"); the ones about what is done, not where from, do not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.profiles.kinds import KINDS
from services.profiles.kinds.trust import TRUSTED_NETWORKS, SourceTrust, network_of
from tests.profiles.factory import LONDON, NEW_YORK, TOKYO, detector, event

DAY = 86400.0
OFFICE = "192.0.2.0/24"
IN_OFFICE = "192.0.2.44"


def _rare_history():
    return [event("fay", "app_access", d * DAY, application="Outlook", country="US", source_ip="198.51.100.1")
            for d in range(10)]


# kind, parameters, events of which the last must fire when nothing is trusted (the last comes from IN_OFFICE)
ADDRESS_PROFILES = {
    # One failure each for six accounts: a spray by its source, nothing by any account alone.
    "failed logins by source": ("failed_logins", {},
                                lambda: [event(u, "logon", i, outcome="failure", source_ip=IN_OFFICE)
                                         for i, u in enumerate(("ann", "bob", "cy", "dee", "eve", "fay"))]),
    "risky_countries": ("risky_countries", {"countries": ["KP"]},
                        lambda: [event("carol", "logon", 0, country="KP", source_ip=IN_OFFICE)]),
    "proximity": ("proximity", {},
                  lambda: [event("dan", "logon", 0, NEW_YORK, source_ip="198.51.100.1"),
                           event("dan", "logon", 600, TOKYO, source_ip=IN_OFFICE)]),
    "shared_credentials": ("shared_credentials", {"interval_seconds": 3600},
                           lambda: [event("gus", "logon", 0, LONDON, source_ip="198.51.100.1"),
                                    event("gus", "logon", 600, NEW_YORK, source_ip="198.51.100.2"),
                                    event("gus", "logon", 1200, LONDON, source_ip=IN_OFFICE)]),
    "custom by source": ("custom_threshold", {"filter": {"event_type": "logon"}, "threshold": 3,
                                              "group_by": "source_ip"},
                         lambda: [event(u, "logon", i, source_ip=IN_OFFICE) for i, u in enumerate("abc")]),
    "custom on a country": ("custom_threshold", {"filter": {"event_type": "logon", "country": "IL"}, "threshold": 2},
                            lambda: [event("adele", "logon", i, country="IL", source_ip=IN_OFFICE) for i in range(2)]),
    "rare country": ("rare_event", {"entity_types": ["country"]},
                     lambda: _rare_history() + [event("fay", "logon", 10 * DAY, country="BR", source_ip=IN_OFFICE)]),
    "rare address": ("rare_event", {"entity_types": ["source_ip"]},
                     lambda: _rare_history() + [event("fay", "logon", 10 * DAY, source_ip=IN_OFFICE)]),
}


@pytest.mark.parametrize("name", ADDRESS_PROFILES)
def test_a_trusted_network_silences_every_address_based_profile(name):
    kind, params, events = ADDRESS_PROFILES[name]
    assert detector(kind, **params).process(events()), "fires when nothing is trusted"
    # Trusted in the profile, or marked trusted by ingest (UEBA_TRUSTED_NETWORKS): the same check.
    assert detector(kind, trusted_networks=[OFFICE], **params).process(events()) == []
    marked = [replace(e, trusted_source=e.source_ip == IN_OFFICE) for e in events()]
    assert detector(kind, **params).process(marked) == []


def test_every_kind_that_reads_addresses_declares_the_one_trusted_networks_parameter():
    declaring = {kind for kind, cls in KINDS.items() if TRUSTED_NETWORKS in cls.parameters}
    assert {kind for kind, _, _ in ADDRESS_PROFILES.values()} <= declaring
    for cls in KINDS.values():
        assert all(p is TRUSTED_NETWORKS for p in cls.parameters if p.name == "trusted_networks")


def test_profiles_about_what_is_done_count_trusted_sources():
    # A burst of privilege use grouped by user is the account's, wherever it logged on from.
    d = detector("custom_threshold", filter={"event_type": "privilege_use"}, threshold=3, trusted_networks=[OFFICE])
    assert len(d.process([event("jo", "privilege_use", i, source_ip=IN_OFFICE, trusted_source=True) for i in range(3)])) == 1
    # A new application is news from the office too.
    d = detector("rare_event", entity_types=["application"], trusted_networks=[OFFICE])
    history = _rare_history()
    assert len(d.process(history + [event("fay", "app_access", 10 * DAY, application="Mega", source_ip=IN_OFFICE)])) == 1


def test_source_trust_tests_addresses_of_either_family_and_ignores_junk():
    trust = SourceTrust(["10.0.0.0/8", "2001:db8::/32"])
    assert trust(event(source_ip="10.1.2.3")) and trust(event(source_ip="2001:db8::1"))
    assert not trust(event(source_ip="11.0.0.1")) and not trust(event(source_ip=None))
    assert not trust(event(source_ip="not-an-address"))
    assert SourceTrust([])(event(source_ip="11.0.0.1", trusted_source=True))
    assert network_of("203.0.113.9") == "203.0.113.0/24" and network_of("2001:db8:1:2::5") == "2001:db8:1::/48"
