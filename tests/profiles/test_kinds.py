"""Every profile kind without a database: positive, negative and boundary cases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.profiles.kinds import KINDS, ParameterError, check_definition
from services.profiles.defaults import DEFAULT_PROFILES
from tests.profiles.factory import (BOSTON, DARMSTADT, FRANKFURT, LILLE, LONDON, MARSEILLE, NEW_YORK, T0, TOKYO,
                                     detector, event)

DAY = 86400


def failures(n, start=0, step=10, user="alice", **fields):
    fields.setdefault("source_ip", "203.0.113.5")
    return [event(user, "logon", start + i * step, outcome="failure", **fields) for i in range(n)]


# --- failed logins ------------------------------------------------------------------

class TestFailedLogins:
    def test_exactly_the_threshold_fires_once(self):
        d = detector("failed_logins", count=5, interval_seconds=600, spray_users=0)
        fired = d.process(failures(5))
        assert len(fired) == 1
        f = fired[0]
        assert f.user == "alice" and f.profile_kind == "failed_logins" and f.dimension == "authentication"
        assert f.evidence["count"] == 5 and f.evidence["threshold"] == 5 and len(f.evidence["event_ids"]) == 5
        assert "5 failed logons for alice" in f.description

    def test_one_below_the_threshold_is_quiet(self):
        d = detector("failed_logins", count=5, interval_seconds=600, spray_users=0)
        assert d.process(failures(4)) == []

    def test_window_is_half_open(self):
        # Five failures spanning exactly the interval are not "within" it; 1 s less is.
        d = detector("failed_logins", count=5, interval_seconds=600, spray_users=0)
        assert d.process(failures(5, step=150)) == []
        d = detector("failed_logins", count=5, interval_seconds=600, spray_users=0)
        assert len(d.process(failures(5, step=149.75))) == 1

    def test_a_long_burst_is_one_anomaly_per_window(self):
        d = detector("failed_logins", count=5, interval_seconds=600, spray_users=0)
        fired = d.process(failures(100, step=6))  # 100 failures over ~10 minutes
        assert len(fired) == 1
        assert len({f.dedup_key for f in fired}) == 1

    def test_a_burst_split_across_a_clock_boundary_still_fires(self):
        # 3 failures before 09:10 and 3 after: fixed 10-minute buckets would miss it.
        d = detector("failed_logins", count=6, interval_seconds=600, spray_users=0)
        events = failures(3, start=540, step=15) + failures(3, start=605, step=15)
        fired = d.process(events)
        assert len(fired) == 1
        assert fired[0].window_start.minute == 9

    def test_a_burst_that_outlasts_its_window_fires_again_in_the_next(self):
        d = detector("failed_logins", count=5, interval_seconds=600, spray_users=0)
        fired = d.process(failures(5) + failures(5, start=700))
        assert len(fired) == 2 and fired[0].dedup_key != fired[1].dedup_key

    def test_success_after_failures_is_raised_higher(self):
        d = detector("failed_logins", risk_score=50, count=5, interval_seconds=600, spray_users=0, success_risk_score=85)
        fired = d.process(failures(5) + [event("alice", "logon", 60, outcome="success", source_ip="203.0.113.5")])
        assert [f.risk_score for f in fired] == [50, 85]
        assert "successful logon" in fired[1].description
        assert fired[1].evidence["success_event_id"]

    def test_success_without_enough_failures_is_quiet(self):
        d = detector("failed_logins", count=5, interval_seconds=600, spray_users=0)
        assert d.process(failures(4) + [event("alice", "logon", 60)]) == []

    def test_password_spray_from_one_address(self):
        d = detector("failed_logins", count=5, interval_seconds=600, spray_users=4)
        events = [event(f"user{i}", "logon", i * 5, outcome="failure", source_ip="198.51.100.7") for i in range(4)]
        events.append(event("user2", "logon", 30, outcome="success", source_ip="198.51.100.7"))
        fired = d.process(events)
        (spray,) = [f for f in fired if f.entity_type == "ip"]
        (success,) = [f for f in fired if f.evidence.get("success_event_id")]
        linked = {f.user for f in fired if f.evidence.get("source_entity") and f is not success}
        assert spray.evidence["source_ip"] == "198.51.100.7" and len(spray.evidence["users"]) == 4
        assert spray.evidence["pattern"] == "password_spray" and linked == {f"user{i}" for i in range(4)}
        assert success.user == "user2" and success.risk_score > spray.risk_score

    def test_spray_below_distinct_users_or_from_trusted_network_is_quiet(self):
        d = detector("failed_logins", count=50, interval_seconds=600, spray_users=4)
        events = [event(f"user{i % 3}", "logon", i, outcome="failure", source_ip="198.51.100.7") for i in range(9)]
        assert d.process(events) == []
        events = [event(f"user{i}", "logon", i, outcome="failure", source_ip="10.0.0.1", trusted_source=True) for i in range(9)]
        assert d.process(events) == []

    def test_late_event_completes_a_burst(self):
        d = detector("failed_logins", count=3, interval_seconds=600, spray_users=0)
        late = failures(1, start=100)
        assert d.process(failures(1, start=50) + failures(1, start=150)) == []
        fired = d.process(late)
        assert len(fired) == 1 and fired[0].evidence["count"] == 3

    def test_application_filter(self):
        d = detector("failed_logins", applications=("vpn",), count=3, interval_seconds=600, spray_users=0)
        assert d.process(failures(3, application="Okta")) == []
        assert len(d.process(failures(3, application="VPN"))) == 1


class TestFailedLoginsChargedToSources:
    def test_a_brute_force_is_the_sources_finding_and_a_linked_one_on_the_account(self):
        d = detector("failed_logins", risk_score=50, count=5, interval_seconds=600, spray_users=10)
        fired = d.process(failures(5, user="root", source_ip="198.51.100.7"))
        by_entity = {(f.entity_type, f.entity or f.user): f for f in fired}
        source, account = by_entity[("ip", "198.51.100.7")], by_entity[("user", "root")]
        assert source.user == "" and source.refresh and source.evidence["count"] == 5 and "brute force" in source.description
        assert account.risk_score == 25 and account.evidence["source_entity"] == {"type": "ip", "entity": "198.51.100.7"}

    def test_the_sources_finding_grows_with_the_true_count_while_the_attack_goes_on(self):
        d = detector("failed_logins", count=5, interval_seconds=600, spray_users=10)
        # 40 failures a minute apart: windows of 10 minutes, one activity of 40 attempts.
        fired = [f for f in d.process(failures(40, step=60, user="root", source_ip="198.51.100.7")) if f.entity_type == "ip"]
        assert len({f.dedup_key for f in fired}) == 1
        assert fired[-1].evidence["count"] == 40 and fired[-1].evidence["last"] > fired[0].evidence["last"]
        # After a pause longer than the interval, another activity.
        later = d.process(failures(5, start=40 * 60 + 1200, user="root", source_ip="198.51.100.7"))
        assert {f.dedup_key for f in later if f.entity_type == "ip"}.isdisjoint({fired[0].dedup_key})

    def test_an_accounts_window_does_not_mix_addresses(self):
        d = detector("failed_logins", count=5, interval_seconds=600, spray_users=0)
        assert d.process(failures(3, source_ip="198.51.100.7") + failures(3, start=40, source_ip="198.51.100.8")) == []

    def test_failures_naming_no_account_are_attempts_from_their_source(self):
        d = detector("failed_logins", count=5, interval_seconds=600, spray_users=10)
        fired = d.process(failures(5, user="", source_ip=None, source_host="N219076184117.netvigator.com"))
        (f,) = fired
        assert (f.entity_type, f.entity, f.user) == ("host", "n219076184117.netvigator.com", "")
        assert f.evidence["nameless"] == 5 and f.evidence["source_host"] == "n219076184117.netvigator.com"

    def test_a_success_after_the_attack_is_the_high_risk_finding_on_the_account(self):
        d = detector("failed_logins", risk_score=50, count=5, interval_seconds=600, spray_users=10, success_risk_score=85)
        fired = d.process(failures(15, user="root", source_ip="198.51.100.7")
                          + [event("root", "logon", 200, outcome="success", source_ip="198.51.100.7")])
        (success,) = [f for f in fired if f.evidence.get("success_event_id")]
        assert (success.user, success.risk_score) == ("root", 85)
        assert success.evidence["source_entity"]["entity"] == "198.51.100.7"
        # A success from elsewhere, by someone else, raises nothing.
        assert d.process([event("fztu", "logon", 210, outcome="success", source_ip="119.137.62.142")]) == []


def source_windows(accounts_per_window: list[int], interval: int = 600, reason: str = "bad_password"):
    """One source per window, each failing once on that many accounts, a window apart."""
    out = []
    for w, n in enumerate(accounts_per_window):
        out += [event(f"u{w}-{i}", "logon", w * interval + i, outcome="failure", source_ip=f"10.{w // 250}.{w % 250}.9",
                      failure_reason=reason) for i in range(n)]
    return out


def spray(n, source_ip="198.51.100.7", start=0, step=5, reason="bad_password", **fields):
    return [event(f"target{i}", "logon", start + i * step, outcome="failure", source_ip=source_ip, failure_reason=reason,
                  **fields) for i in range(n)]


def is_spray(fired) -> bool:
    return any(f.entity_type == "ip" and f.evidence["pattern"] != "brute_force" for f in fired)


class TestSprayRelativeToTheOrganisation:
    # count 50: no brute force threshold in the way; the spray threshold alone decides.
    def test_without_history_the_floor_decides(self):
        assert not is_spray(detector("failed_logins", count=50).process(spray(4)))
        fired = detector("failed_logins", count=50).process(spray(5))
        assert is_spray(fired)
        (source,) = [f for f in fired if f.entity_type == "ip"]
        assert source.evidence["spray_threshold"] == 5 and source.evidence["pattern"] == "password_spray"

    def test_a_tenant_whose_sources_often_fail_on_several_accounts_needs_more_for_a_spray(self):
        d = detector("failed_logins", count=50)
        # 1,000 source-windows: 2 % of them fail on 6 accounts (a shared terminal room, say).
        d.process(source_windows([6 if w % 50 == 0 else 1 for w in range(1000)]))
        assert d.spray_threshold() == 7
        later = 1000 * 600 + 3600
        assert not is_spray(d.process(spray(6, start=later)))
        assert is_spray(d.process(spray(7, source_ip="198.51.100.8", start=later)))

    def test_an_earlier_spray_in_the_history_does_not_hide_the_next(self):
        d = detector("failed_logins", count=50)
        d.process(source_windows([9 if w == 500 else 1 for w in range(1000)]))
        assert d.spray_threshold() == 5
        assert is_spray(d.process(spray(5, start=1000 * 600 + 3600)))

    def test_a_short_history_is_not_trusted_and_the_quantile_can_be_switched_off(self):
        d = detector("failed_logins", count=50)
        d.process(source_windows([8] * 100))  # 100 windows: too few to say what is usual
        assert d.spray_threshold() == 5
        d = detector("failed_logins", count=50, spray_quantile=0)
        d.process(source_windows([8] * 1000))
        assert d.spray_threshold() == 5

    def test_seeded_history_sets_the_threshold_until_its_days_leave_the_baseline(self):
        today = int(T0.timestamp() // DAY)
        history = [(today - 20, 1, 900), (today - 20, 9, 100)]  # a tenth of the windows fail on 9 accounts
        d = detector("failed_logins", count=50, spray_baseline_days=30)
        d.seed_failure_spread(600, history)
        assert d.spray_threshold() == 10
        d.process([event("x", "logon", at, outcome="failure", source_ip="192.0.2.1") for at in (0, 700)])
        assert d.spray_threshold() == 10
        # A window closed 11 days later: the seeded day is 31 days old and leaves the baseline.
        d.process([event("x", "logon", 11 * DAY + at, outcome="failure", source_ip="192.0.2.1") for at in (0, 700)])
        assert d.spray_threshold() == 5


class TestFailedLoginsTargetsAndSuccesses:
    def test_each_existing_account_tried_gets_one_linked_finding_that_grows(self):
        d = detector("failed_logins", risk_score=50, count=10)
        events = failures(12, user="root", source_ip="198.51.100.7")
        events += [event("oracle", "logon", 200, outcome="failure", source_ip="198.51.100.7", failure_reason="unknown_user"),
                   event("git", "logon", 210, outcome="failure", source_ip="198.51.100.7", failure_reason="bad_password")]
        fired = d.process(events)
        linked = {}
        for f in fired:
            if f.entity_type == "user":
                linked[f.user] = f
        # The account that does not exist here is named in the source's evidence, not put at risk.
        assert set(linked) == {"root", "git"}
        assert all(f.risk_score == 25 and f.refresh and f.evidence["source_entity"]["entity"] == "198.51.100.7"
                   for f in linked.values())
        assert linked["root"].evidence["count"] == 12
        assert len({f.dedup_key for f in fired if f.user == "root"}) == 1
        source = [f for f in fired if f.entity_type == "ip"][-1]
        assert source.evidence["users"] == ["git", "oracle", "root"] and source.evidence["count"] == 14

    def test_stuffing_and_scans_are_named_and_charged_to_their_source(self):
        # Most accounts tried do not exist here: a list from elsewhere.
        stuffing = detector("failed_logins", count=50).process(spray(2) + [
            event(f"leaked{i}", "logon", 30 + i, outcome="failure", source_ip="198.51.100.7", failure_reason="unknown_user")
            for i in range(4)])
        source = [f for f in stuffing if f.entity_type == "ip"][-1]
        assert source.evidence["pattern"] == "credential_stuffing" and source.entity == "198.51.100.7"
        assert {f.user for f in stuffing if f.user} == {"target0", "target1"}
        # One account tried over and over, a few names beside it: still a brute force of that account.
        brute = detector("failed_logins", count=10).process(
            failures(20, user="root", source_ip="198.51.100.7", step=1)
            + [event(f"guess{i}", "logon", 30 + i, outcome="failure", source_ip="198.51.100.7") for i in range(6)])
        assert [f for f in brute if f.entity_type == "ip"][-1].evidence["pattern"] == "brute_force"
        scan = detector("failed_logins", count=50).process([
            event(f"admin{i % 2}", "logon", i, outcome="failure", source_host="ws-17", destination_host=f"srv{i}")
            for i in range(6)])
        assert [f.evidence["pattern"] for f in scan if f.entity_type == "host"][-1] == "logon_scan"
        assert {(f.entity_type, f.entity) for f in scan if not f.user} == {("host", "ws-17")}

    def test_a_success_counts_the_failures_of_its_own_second_written_after_it(self):
        # Four accounts fail, the fifth logon works, and the rest of that second's failures are
        # written after it: the spray was under way when it succeeded.
        d = detector("failed_logins", risk_score=50, count=50, success_risk_score=80)
        events = spray(4, step=0.0, start=10)
        events += [event("target9", "logon", 11, outcome="success", source_ip="198.51.100.7")]
        events += [event(f"late{i}", "logon", 11, outcome="failure", source_ip="198.51.100.7") for i in range(2)]
        fired = d.process(events)
        (success,) = [f for f in fired if f.evidence.get("success_event_id")]
        assert (success.user, success.risk_score) == ("target9", 80)
        assert success.evidence["source_entity"] == {"type": "ip", "entity": "198.51.100.7"}

    def test_failures_of_a_later_second_do_not_make_an_earlier_success_a_compromise(self):
        d = detector("failed_logins", count=50)
        events = spray(4, step=0.0, start=10) + [event("target9", "logon", 11, outcome="success", source_ip="198.51.100.7")]
        events += [event(f"late{i}", "logon", 12, outcome="failure", source_ip="198.51.100.7") for i in range(2)]
        fired = d.process(events)
        assert is_spray(fired) and not [f for f in fired if f.evidence.get("success_event_id")]

    def test_a_brute_force_completed_in_the_second_of_the_success_makes_it_high_risk(self):
        d = detector("failed_logins", risk_score=50, count=10, spray_users=0, success_risk_score=80)
        events = failures(9, start=0, step=1, user="root")
        events += [event("root", "logon", 20, outcome="success", source_ip="203.0.113.5"),
                   event("root", "logon", 20.0, outcome="failure", source_ip="203.0.113.5")]
        fired = d.process(events)
        assert [f.risk_score for f in fired if f.evidence.get("success_event_id")] == [80]
        assert fired[-1].evidence["count"] == 11  # ten failures and the success


# --- bulk ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,event_type", [("bulk_download", "file_download"), ("bulk_upload", "file_upload"), ("bulk_delete", "file_delete")])
class TestBulk:
    def test_file_count_at_threshold(self, kind, event_type):
        d = detector(kind, file_count=100, bytes=0, interval_seconds=3600)
        events = [event("bob", event_type, i * 30, file_count=10, bytes=1000) for i in range(10)]
        fired = d.process(events)
        assert len(fired) == 1 and fired[0].evidence["files"] == 100 and fired[0].dimension == "data"

    def test_below_threshold_and_other_types_are_quiet(self, kind, event_type):
        d = detector(kind, file_count=100, bytes=0, interval_seconds=3600)
        assert d.process([event("bob", event_type, i * 30, file_count=10) for i in range(9)]) == []
        other = "file_share"
        assert d.process([event("bob", other, i, file_count=10) for i in range(20)]) == []

    def test_bytes_threshold(self, kind, event_type):
        d = detector(kind, file_count=0, bytes=10_000, interval_seconds=3600)
        assert len(d.process([event("bob", event_type, i, bytes=2_500) for i in range(4)])) == 1

    def test_spread_over_two_intervals_is_quiet(self, kind, event_type):
        d = detector(kind, file_count=100, bytes=0, interval_seconds=3600)
        # 60 files, then 60 more 2 hours later.
        events = [event("bob", event_type, 0, file_count=60), event("bob", event_type, 7200, file_count=60)]
        assert d.process(events) == []


def test_bulk_needs_a_threshold():
    with pytest.raises(ParameterError, match="parameters.file_count"):
        KINDS["bulk_download"].check_parameters({"file_count": 0, "bytes": 0})


# --- risky countries -------------------------------------------------------------------------

class TestRiskyCountries:
    def test_listed_country_fires_once_per_day(self):
        d = detector("risky_countries", countries=["KP", "ir"])
        fired = d.process([event("carol", "logon", 0, country="IR", city="Tehran"), event("carol", "logon", 3600, country="IR")])
        assert len(fired) == 1 and "Tehran, IR" in fired[0].description and fired[0].dimension == "location"
        assert len(d.process([event("carol", "logon", DAY + 1, country="IR")])) == 1

    def test_unlisted_country_or_failure_is_quiet(self):
        d = detector("risky_countries", countries=["KP"])
        assert d.process([event("carol", "logon", 0, country="FR"), event("carol", "logon", 1, country="KP", outcome="failure")]) == []


# --- proximity ---------------------------------------------------------------------------------

class TestProximity:
    def test_impossible_trip_fires_with_previous_location(self):
        d = detector("proximity", max_speed_kmh=900, min_distance_km=500)
        fired = d.process([event("dan", "logon", 0, NEW_YORK), event("dan", "logon", 3600, LONDON)])
        assert len(fired) == 1
        ev = fired[0].evidence
        assert ev["previous_location"]["city"] == "New York" and ev["location"]["city"] == "London"
        assert ev["distance_km"] > 5000 and ev["speed_kmh"] > 5000

    def test_plausible_trip_is_quiet(self):
        d = detector("proximity", max_speed_kmh=900, min_distance_km=500)
        # About 5,570 km in 8 hours: 700 km/h, an ordinary flight.
        assert d.process([event("dan", "logon", 0, NEW_YORK), event("dan", "logon", 8 * 3600, LONDON)]) == []

    def test_speed_multiplier_is_a_tolerance(self):
        events = [event("dan", "logon", 0, NEW_YORK), event("dan", "logon", 5 * 3600, LONDON)]  # ~1,115 km/h
        assert len(detector("proximity", max_speed_kmh=900, speed_multiplier=1.0).process(events)) == 1
        assert detector("proximity", max_speed_kmh=900, speed_multiplier=1.5).process(events) == []

    def test_short_hops_are_below_min_distance(self):
        d = detector("proximity", min_distance_km=500)
        assert d.process([event("dan", "logon", 0, NEW_YORK), event("dan", "logon", 60, BOSTON)]) == []  # ~300 km

    def test_trusted_network_is_exempt(self):
        d = detector("proximity", trusted_networks=["192.0.2.0/24"])
        events = [event("dan", "logon", 0, NEW_YORK, source_ip="198.51.100.1"),
                  event("dan", "logon", 600, TOKYO, source_ip="192.0.2.44")]
        assert d.process(events) == []
        events = [event("erin", "logon", 0, NEW_YORK), event("erin", "logon", 600, TOKYO, trusted_source=True)]
        assert d.process(events) == []

    def test_the_way_back_is_the_same_anomaly(self):
        d = detector("proximity", suppress_seconds=6 * 3600)
        events = [event("dan", "logon", 0, NEW_YORK), event("dan", "logon", 600, TOKYO), event("dan", "logon", 1200, NEW_YORK)]
        assert len(d.process(events)) == 1

    def test_same_country_800_km_in_20_minutes_fires_and_two_cities_30_km_apart_do_not(self):
        d = detector("proximity")
        fired = d.process([event("dan", "logon", 0, LILLE), event("dan", "app_access", 1200, MARSEILLE)])
        assert len(fired) == 1 and fired[0].evidence["location"]["country"] == "FR"
        assert fired[0].evidence["previous_location"]["country"] == "FR" and fired[0].evidence["distance_km"] > 800
        # Frankfurt to Darmstadt, about 27 km, a minute apart: inside the two cities' radii.
        assert detector("proximity").process([event("eve", "logon", 0, FRANKFURT), event("eve", "logon", 60, DARMSTADT)]) == []

    def test_coarse_geolocation_is_tolerated_by_its_radius(self):
        # Coordinates without a city (a country centroid) are 500 km uncertain: 600 km in ten minutes is possible.
        centroid = (LILLE[0] - 5.4, LILLE[1], "FR", "")
        events = [event("dan", "logon", 0, LILLE), event("dan", "logon", 600, centroid)]
        assert detector("proximity").process(events) == []
        assert len(detector("proximity", coarse_radius_km=50).process(events)) == 1

    def test_a_coarse_location_in_between_does_not_hide_the_jump(self):
        # Lille, then a centroid within reach of both, then Marseille: each step is possible, the whole is not.
        centroid = (46.9, 4.2, "FR", "")
        d = detector("proximity")
        fired = d.process([event("dan", "logon", 0, LILLE), event("dan", "logon", 600, centroid),
                           event("dan", "logon", 1200, MARSEILLE)])
        assert len(fired) == 1
        assert (fired[0].evidence["previous_location"]["city"], fired[0].evidence["location"]["city"]) == ("Lille", "Marseille")

    def test_switching_between_the_users_own_networks_is_not_travel_but_a_new_network_is(self):
        vpn_exit, hotel, attacker = "203.0.113.9", "198.51.100.7", "192.0.2.200"
        history = [event("vic", "app_access", day * DAY, LONDON, source_ip=vpn_exit) for day in range(5)]
        # The trip: Tokyo's hotel from day 5 (a plausible flight), then back and forth between the hotel
        # network and the corporate VPN exiting in London on day 6.
        trip = [event("vic", "logon", 5 * DAY + 14 * 3600, TOKYO, source_ip=hotel)]
        trip += [event("vic", "app_access", 6 * DAY + i * 600, LONDON if i % 2 else TOKYO,
                       source_ip=vpn_exit if i % 2 else hotel) for i in range(8)]
        d = detector("proximity")
        assert d.process(history + trip) == []
        # The same day, someone in Tokyo on a network the account never used while vic works in London.
        d = detector("proximity")
        d.process(history)
        fired = d.process([event("vic", "app_access", 6 * DAY, LONDON, source_ip=vpn_exit),
                           event("vic", "logon", 6 * DAY + 900, TOKYO, source_ip=attacker)])
        assert len(fired) == 1 and fired[0].evidence["familiar_network"] == [True, False]
        # Without learning the user's networks the VPN switches read as travel.
        assert len(detector("proximity", familiar_after_hours=0).process(history + trip)) == 1

    def test_a_network_reached_by_a_plausible_journey_is_the_users_at_once(self):
        vpn_exit, hotel = "203.0.113.9", "198.51.100.7"
        history = [event("vic", "app_access", day * DAY, LONDON, source_ip=vpn_exit) for day in range(5)]
        # Landed in Tokyo 14 hours after the last London event (a flight), switching to the VPN an hour later.
        trip = [event("vic", "logon", 4 * DAY + 14 * 3600, TOKYO, source_ip=hotel)]
        trip += [event("vic", "app_access", 4 * DAY + 15 * 3600 + i * 600, LONDON if i % 2 else TOKYO,
                       source_ip=vpn_exit if i % 2 else hotel) for i in range(6)]
        assert detector("proximity").process(history + trip) == []

    def test_networks_unused_for_familiar_days_are_forgotten(self, monkeypatch):
        import services.profiles.kinds.location as location

        monkeypatch.setattr(location, "PRUNE_EVERY", 10)
        d = detector("proximity", familiar_days=2)
        d.process([event("vic", "app_access", i * 60, LONDON, source_ip=f"203.0.{i}.9") for i in range(5)])
        assert d.retained() >= 5
        d.process([event("vic", "app_access", 3 * DAY + i, LONDON, source_ip="198.51.100.7") for i in range(10)])
        assert len(d._networks) == 1  # the four days old ones are gone

    def test_failed_logons_do_not_move_anyone(self):
        d = detector("proximity")
        assert d.process([event("dan", "logon", 0, NEW_YORK), event("dan", "logon", 600, TOKYO, outcome="failure")]) == []


# --- rare event -------------------------------------------------------------------------------------

class TestRareEvent:
    def history(self, days=10, app="Outlook"):
        return [event("fay", "app_access", d * DAY, application=app, country="US") for d in range(days)]

    def test_new_application_after_learning(self):
        d = detector("rare_event", entity_types=["application"], lookback_days=30, min_history_days=7)
        assert d.process(self.history()) == []
        fired = d.process([event("fay", "app_access", 10 * DAY, application="Dropbox")])
        assert len(fired) == 1
        assert fired[0].evidence["entity"] == "dropbox" and fired[0].evidence["last_seen"] is None
        assert fired[0].dimension == "application"
        # Now it is known.
        assert d.process([event("fay", "app_access", 10 * DAY + 7200, application="Dropbox")]) == []

    def test_user_still_learning_is_quiet(self):
        d = detector("rare_event", entity_types=["application"], min_history_days=7)
        assert d.process(self.history(days=6) + [event("fay", "app_access", 6 * DAY, application="Dropbox")]) == []

    def test_seen_within_lookback_is_quiet_and_older_is_rare(self):
        d = detector("rare_event", entity_types=["country"], lookback_days=30, min_history_days=7)
        events = [event("fay", "logon", 0, country="FR")] + self.history(days=40)
        assert d.process(events) == []  # FR at day 0 is the first sighting of a learning user
        assert d.process([event("fay", "logon", 29 * DAY, country="FR")]) == []  # seen 29 days ago
        d2 = detector("rare_event", entity_types=["country"], lookback_days=30, min_history_days=7)
        d2.process([event("fay", "logon", 0, country="FR")] + self.history(days=40))
        fired = d2.process([event("fay", "logon", 31 * DAY, country="FR")])
        assert len(fired) == 1 and fired[0].evidence["last_seen"] is not None and fired[0].dimension == "location"

    def test_seeded_history_counts(self):
        d = detector("rare_event", entity_types=["host"], min_history_days=7)
        first = event("fay", "host_access", 0).time
        d.seed_users([("fay", "finance", first)])
        d.seed_entities([("fay", "host", "srv1", first, first + timedelta(days=9))])
        assert d.process([event("fay", "host_access", 10 * DAY, destination_host="SRV1")]) == []
        assert len(d.process([event("fay", "host_access", 10 * DAY, destination_host="srv2")])) == 1


# --- shared credentials -------------------------------------------------------------------------------

class TestSharedCredentials:
    def test_back_and_forth_between_distant_places(self):
        d = detector("shared_credentials", interval_seconds=3600, min_distance_km=500)
        events = [event("gus", "app_access", 0, NEW_YORK), event("gus", "app_access", 600, LONDON),
                  event("gus", "app_access", 1200, NEW_YORK)]
        fired = d.process(events)
        assert len(fired) == 1 and len(fired[0].evidence["locations"]) == 3

    def test_one_trip_is_not_sharing(self):
        d = detector("shared_credentials", interval_seconds=3600, min_distance_km=500)
        events = [event("gus", "app_access", 0, NEW_YORK), event("gus", "app_access", 600, LONDON),
                  event("gus", "app_access", 1200, LONDON)]
        assert d.process(events) == []

    def test_back_and_forth_slower_than_the_interval_is_quiet(self):
        d = detector("shared_credentials", interval_seconds=3600, min_distance_km=500)
        events = [event("gus", "logon", 0, NEW_YORK), event("gus", "logon", 3600, LONDON), event("gus", "logon", 7200, NEW_YORK)]
        assert d.process(events) == []

    def test_many_addresses(self):
        d = detector("shared_credentials", max_addresses=3)
        events = [event("gus", "logon", i * 60, source_ip=f"198.51.100.{i}") for i in range(3)]
        assert len(d.process(events)) == 1
        d = detector("shared_credentials", max_addresses=3)
        assert d.process(events[:2]) == []


# --- data exfiltration ---------------------------------------------------------------------------------

MB = 1024 * 1024


class TestDataExfiltration:
    def baseline(self, d, users=("hal", "ivy"), app="SharePoint", daily=5 * MB, department="sales"):
        events = []
        for day in range(10):
            for u in users:
                events.append(event(u, "file_upload", day * DAY + 3600, application=app, bytes=daily, department=department))
        assert d.process(events) == []

    def test_large_upload_to_an_application_nobody_used(self):
        d = detector("data_exfiltration", min_bytes=100 * MB, novelty_scope="peers")
        self.baseline(d)
        fired = d.process([event("hal", "file_upload", 10 * DAY + i * 60, application="MegaUpload", bytes=30 * MB,
                                 department="sales") for i in range(4)])
        # One finding, raised again (refreshed under its key) as the uploads go on.
        assert len({f.dedup_key for f in fired}) == 1 and all(f.refresh for f in fired)
        last = fired[-1]
        assert last.evidence["novel_application"] is True and last.evidence["bytes"] == 120 * MB
        assert last.risk_score == 50  # past min_bytes, and nobody else used it: the profile's full score

    def test_below_novel_min_bytes_or_a_known_application_below_min_bytes_is_quiet(self):
        d = detector("data_exfiltration", min_bytes=100 * MB, novel_min_bytes=MB)
        self.baseline(d)
        assert d.process([event("hal", "file_upload", 10 * DAY, application="MegaUpload", bytes=MB // 2)]) == []
        assert d.process([event("hal", "file_upload", 10 * DAY, application="SharePoint", bytes=90 * MB)]) == []

    def test_small_upload_to_a_never_used_app_weighs_by_volume_and_by_rarity_in_the_organisation(self):
        d = detector("data_exfiltration", risk_score=70, min_bytes=100 * MB, novel_min_bytes=MB)
        self.baseline(d)
        # Dropbox: new to hal and to the sales department, but a fifth of the organisation (engineering) uses it.
        self.baseline(d, users=tuple(f"eng{i}" for i in range(10)), app="Dropbox", department="engineering")
        at = 10 * DAY + 7200
        (gofile,) = d.process([event("hal", "file_upload", at, application="gofile", bytes=2 * MB, department="sales")])
        (dropbox,) = d.process([event("ivy", "file_upload", at, application="Dropbox", bytes=2 * MB, department="sales")])
        assert gofile.evidence["novel_application"] and dropbox.evidence["novel_application"]
        assert gofile.evidence["other_users_of_application"] == 0 and dropbox.evidence["other_users_of_application"] == 10
        # A small upload is a finding, below the profile's score; the rarer the application, the heavier.
        assert 30 <= gofile.risk_score < 70 and dropbox.risk_score < gofile.risk_score
        # More volume in the same window: the same finding, heavier.
        (grown,) = d.process([event("hal", "file_upload", at + 600, application="gofile", bytes=40 * MB, department="sales")])
        assert grown.dedup_key == gofile.dedup_key and grown.refresh
        assert grown.evidence["bytes"] == 42 * MB and gofile.risk_score < grown.risk_score < 70

    def test_application_a_peer_uses_is_not_novel_but_far_above_usual_is(self):
        d = detector("data_exfiltration", min_bytes=100 * MB, novelty_scope="peers", multiplier=10)
        self.baseline(d, users=("ivy",), app="Box")
        self.baseline(d, users=("hal",), app="SharePoint")
        # Box is new to hal but ivy (same department) uses it; 120 MB is over 10 x hal's usual 5 MB.
        fired = d.process([event("hal", "file_upload", 10 * DAY, application="Box", bytes=120 * MB, department="sales")])
        assert len(fired) == 1 and fired[0].evidence["novel_application"] is False
        # 40 MB more than usual on a known application, but under min_bytes: quiet.
        assert d.process([event("ivy", "file_upload", 10 * DAY, application="Box", bytes=45 * MB, department="sales")]) == []

    def test_usual_volume_on_a_known_application_is_quiet(self):
        d = detector("data_exfiltration", min_bytes=100 * MB, multiplier=10)
        self.baseline(d, daily=150 * MB)
        assert d.process([event("hal", "file_upload", 10 * DAY + 7200, application="SharePoint", bytes=200 * MB, department="sales")]) == []

    def test_learning_user_is_quiet(self):
        d = detector("data_exfiltration", min_bytes=100 * MB, min_history_days=7)
        assert d.process([event("new", "file_upload", 0, application="MegaUpload", bytes=500 * MB)]) == []


# --- custom threshold -----------------------------------------------------------------------------------

class TestCustomThreshold:
    def test_count_per_user_with_filter(self):
        d = detector("custom_threshold", filter={"event_type": "privilege_use", "action": ["sudo", "runas"]},
                     threshold=3, interval_seconds=600)
        events = [event("jo", "privilege_use", i, action="sudo") for i in range(2)] + [event("jo", "privilege_use", 5, action="other")]
        assert d.process(events) == []
        fired = d.process([event("jo", "privilege_use", 9, action="RunAs")])
        assert len(fired) == 1 and fired[0].evidence["count"] == 3

    def test_sum_grouped_by_source(self):
        d = detector("custom_threshold", filter={"event_type": "file_download"}, aggregate="sum", sum_field="bytes",
                     threshold=1000, interval_seconds=600, group_by="source_ip")
        events = [event(u, "file_download", i, bytes=400, source_ip="10.1.1.1") for i, u in enumerate(["a", "b", "b"])]
        fired = d.process(events)
        assert len(fired) == 1 and fired[0].user == "b" and fired[0].evidence["users"] == ["a", "b"]

    def test_filter_fields_are_checked(self):
        with pytest.raises(ParameterError, match=r"parameters.filter.colour"):
            KINDS["custom_threshold"].check_parameters({"filter": {"colour": "red"}})


# --- definitions -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,params,field", [
    ("failed_logins", {"count": 0}, "parameters.count: must be a positive integer"),
    ("failed_logins", {"count": 2.5}, "parameters.count: must be a positive integer"),
    ("failed_logins", {"count": "5"}, "parameters.count: must be a positive integer"),
    ("failed_logins", {"bogus": 1}, "parameters.bogus: unknown parameter"),
    ("proximity", {"trusted_networks": ["10.0.0.0/33"]}, "parameters.trusted_networks[0]: '10.0.0.0/33' is not a CIDR"),
    ("risky_countries", {"countries": ["Iran"]}, "parameters.countries[0]"),
    ("rare_event", {"entity_types": ["planet"]}, "parameters.entity_types[0]: must be one of"),
    ("data_exfiltration", {"novelty_scope": "galaxy"}, "parameters.novelty_scope: must be one of"),
])
def test_parameter_errors_name_the_parameter(kind, params, field):
    with pytest.raises(ParameterError) as err:
        check_definition(name="x", kind=kind, risk_score=50, parameters=params)
    assert str(err.value).startswith(field)


def test_definition_errors():
    with pytest.raises(ParameterError, match="^risk_score"):
        check_definition(name="x", kind="failed_logins", risk_score=0, parameters={})
    with pytest.raises(ParameterError, match="^name: required"):
        check_definition(name=" ", kind="failed_logins", risk_score=5, parameters={})
    with pytest.raises(ParameterError, match="^dimension"):
        check_definition(name="x", kind="failed_logins", risk_score=5, parameters={}, dimension="mood")


def test_defaults_are_valid_and_cover_every_kind():
    for d in DEFAULT_PROFILES:
        check_definition(name=d.name, kind=d.kind, risk_score=d.risk_score, parameters=d.parameters, dimension=d.dimension)
    assert {d.kind for d in DEFAULT_PROFILES} == set(KINDS)


def test_rare_event_ignores_what_the_department_commonly_uses():
    d = detector("rare_event", entity_types=["application"], min_history_days=7, max_org_share=0.05)
    history = []
    for day in range(10):
        for u in ("uma", "vic", "wes"):
            history.append(event(u, "app_access", day * DAY, application="Outlook", department="design"))
        history.append(event("vic", "app_access", day * DAY + 60, application="Figma", department="design"))
    assert d.process(history) == []
    # Figma is new to uma, but a department peer uses it: not rare. Mega is new to everyone: rare.
    assert d.process([event("uma", "app_access", 10 * DAY, application="Figma", department="design")]) == []
    fired = d.process([event("uma", "app_access", 10 * DAY + 60, application="Mega", department="design")])
    assert len(fired) == 1 and fired[0].evidence["org_share"] == 0


def test_byte_sizes_name_binary_units():
    from services.profiles.kinds.base import human_bytes

    assert human_bytes(6 * 10**9) == "5.6 GiB"
    assert human_bytes(512) == "512 B" and human_bytes(5 * 1024**2) == "5.0 MiB"
