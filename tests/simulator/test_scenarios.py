"""Injected scenarios, attacks and benign look-alikes: every kind is labelled, and the evidence is
really in the events."""

from __future__ import annotations

import collections
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from ueba.simulator import BENIGN_KINDS, LABEL_KINDS, RISKY_COUNTRIES, SimulationConfig, simulate
from ueba.simulator.world import haversine_km
from ueba.v1 import common_pb2 as pb

START = datetime(2026, 10, 1, tzinfo=timezone.utc)


def _t(e) -> datetime:
    return e.time.ToDatetime(tzinfo=timezone.utc)


def _window(events, label):
    return [e for e in events if e.user == label.user and label.start <= _t(e) <= label.end]


def _labels(sim, kind):
    found = [label for label in sim.labels if label.kind == kind]
    assert found, kind
    return found


def _km(a, b) -> float:
    return haversine_km(a.geo.latitude, a.geo.longitude, b.geo.latitude, b.geo.longitude)


def test_every_kind_is_labelled_for_existing_users(attacked):
    sim, _ = attacked
    assert {label.kind for label in sim.labels} == set(LABEL_KINDS)
    names = {u.name for u in sim.users}
    assert all(label.user in names for label in sim.labels)
    assert all(label.start <= label.end and label.description for label in sim.labels)


def test_no_labels_without_scenarios():
    assert simulate(SimulationConfig(users=30, days=14, seed=11, scenarios=False)).labels == []


def test_scenarios_start_after_the_baseline_week(attacked):
    sim, _ = attacked
    assert min(label.start for label in sim.labels) >= sim.start + timedelta(days=7)


def test_label_bounds_are_the_first_and_last_anomalous_events(attacked):
    sim, events = attacked
    times = collections.defaultdict(set)
    for e in events:
        times[e.user].add(_t(e))
    for label in sim.labels:
        assert label.start in times[label.user] and label.end in times[label.user], label


def test_scenario_counts_are_configurable():
    sim = simulate(SimulationConfig(users=40, days=14, seed=3, scenarios_per_kind=0,
                                    scenario_counts={"brute_force": 3, "mass_deletion": 2}))
    assert collections.Counter(label.kind for label in sim.labels) == {"brute_force": 3, "mass_deletion": 2}


def test_brute_force_is_many_failures_in_minutes_from_one_address(attacked):
    sim, events = attacked
    for label in _labels(sim, "brute_force"):
        failures = [e for e in _window(events, label)
                    if e.outcome == pb.OUTCOME_FAILURE and e.source_ip == label.source]
        assert len(failures) >= 20
        assert _t(failures[-1]) - _t(failures[0]) <= timedelta(minutes=15)


def test_password_spray_tries_many_accounts_once_or_twice(attacked):
    sim, events = attacked
    labels = _labels(sim, "password_spray")
    by_source = collections.defaultdict(list)
    for label in labels:
        by_source[label.source].append(label)
    for source, group in by_source.items():
        assert len({label.user for label in group}) >= 15
        attempts = collections.Counter(e.user for e in events
                                       if e.source_ip == source and e.outcome == pb.OUTCOME_FAILURE)
        assert set(attempts) == {label.user for label in group}
        assert set(attempts.values()) <= {1, 2}


def test_impossible_travel_is_two_distant_logons_within_an_hour(attacked):
    sim, events = attacked
    for label in _labels(sim, "impossible_travel"):
        logons = [e for e in _window(events, label)
                  if e.type == pb.EVENT_TYPE_LOGON and e.outcome == pb.OUTCOME_SUCCESS]
        pairs = [(a, b) for a in logons for b in logons
                 if _km(a, b) >= 3000 and timedelta(0) < _t(b) - _t(a) <= timedelta(hours=1)]
        assert pairs, label


def test_offhours_logon_comes_from_a_never_seen_host_at_night(attacked):
    sim, events = attacked
    users = {u.name: u for u in sim.users}
    for label in _labels(sim, "offhours_new_host"):
        first = _window(events, label)[0]
        assert first.type == pb.EVENT_TYPE_LOGON and first.outcome == pb.OUTCOME_SUCCESS
        local = _t(first).astimezone(ZoneInfo(users[label.user].timezone))
        assert 1 <= local.hour < 5
        elsewhere = {e.source_host for e in events if e.user == label.user and not label.start <= _t(e) <= label.end}
        assert first.source_host not in elsewhere


def test_lateral_movement_touches_twenty_new_hosts_within_an_hour(attacked):
    sim, events = attacked
    for label in _labels(sim, "lateral_movement"):
        assert label.end - label.start <= timedelta(hours=1)
        before = {e.destination_host for e in events if e.user == label.user and _t(e) < label.start}
        touched = {e.destination_host for e in _window(events, label) if e.type == pb.EVENT_TYPE_HOST_ACCESS}
        assert len(touched - before) >= 20


def test_bulk_download_is_hundreds_of_files_and_gigabytes_in_an_hour_then_departure(attacked):
    sim, events = attacked
    departures = sim.departures()
    for label in _labels(sim, "bulk_download"):
        downloads = [e for e in _window(events, label) if e.type == pb.EVENT_TYPE_FILE_DOWNLOAD]
        assert len(downloads) >= 200 and sum(e.bytes for e in downloads) >= 2e9
        assert label.end - label.start <= timedelta(hours=1)
        if label.user in departures:
            assert not [e for e in events if e.user == label.user and _t(e) >= departures[label.user] + timedelta(
                days=1)]


def test_mass_deletion_is_hundreds_of_deletes(attacked):
    sim, events = attacked
    for label in _labels(sim, "mass_deletion"):
        deletes = [e for e in _window(events, label) if e.type == pb.EVENT_TYPE_FILE_DELETE]
        assert len(deletes) >= 200 and label.end - label.start <= timedelta(hours=1)


def test_upload_goes_to_an_application_nobody_used(attacked):
    sim, events = attacked
    for label in _labels(sim, "upload_new_app"):
        uploads = [e for e in _window(events, label) if e.type == pb.EVENT_TYPE_FILE_UPLOAD]
        apps = {e.application for e in uploads}
        assert len(apps) == 1 and sum(e.bytes for e in uploads) >= 1e9
        app = apps.pop()
        assert not [e for e in events if e.application == app and not (
            e.user == label.user and label.start <= _t(e) <= label.end)]


def test_shared_credentials_are_simultaneous_sessions_far_apart(attacked):
    sim, events = attacked
    for label in _labels(sim, "shared_credentials"):
        window = _window(events, label)
        cities = {}
        for e in window:
            cities.setdefault(e.geo.city, []).append(e)
        far = [(a, b) for a in cities for b in cities if a < b and _km(cities[a][0], cities[b][0]) >= 800]
        assert far, label
        a, b = (cities[c] for c in far[0])
        overlap = min(_t(a[-1]), _t(b[-1])) - max(_t(a[0]), _t(b[0]))
        assert overlap >= timedelta(hours=1)


def test_risky_country_is_a_successful_logon_from_a_listed_country(attacked):
    sim, events = attacked
    for label in _labels(sim, "risky_country"):
        logons = [e for e in _window(events, label) if e.type == pb.EVENT_TYPE_LOGON
                  and e.outcome == pb.OUTCOME_SUCCESS and e.geo.country_code in RISKY_COUNTRIES]
        assert logons and label.source == logons[0].source_ip


def test_look_alikes_are_labelled_benign_and_go_to_users_no_attack_touched(attacked):
    sim, _ = attacked
    attacked_users = {label.user for label in sim.labels if not label.benign}
    lookalikes = [label for label in sim.labels if label.benign]
    assert {label.kind for label in lookalikes} == set(BENIGN_KINDS)
    assert not {label.user for label in lookalikes} & attacked_users


def test_slow_spray_tries_each_account_once_over_hours_with_few_failures_an_hour(attacked):
    sim, events = attacked
    by_source = collections.defaultdict(set)
    for label in _labels(sim, "slow_password_spray"):
        by_source[label.source].add(label.user)
    for source, users in by_source.items():
        failures = [e for e in events if e.source_ip == source and e.outcome == pb.OUTCOME_FAILURE]
        assert collections.Counter(e.user for e in failures) == {u: 1 for u in users}
        assert len(users) >= 10 and _t(failures[-1]) - _t(failures[0]) >= timedelta(hours=1)
        per_hour = collections.Counter(_t(e).replace(minute=0, second=0, microsecond=0) for e in failures)
        assert max(per_hour.values()) <= 8


def test_ticket_lateral_movement_asks_service_tickets_for_hosts_never_used(attacked):
    sim, events = attacked
    for label in _labels(sim, "ticket_lateral_movement"):
        before = {e.destination_host.lower() for e in events if e.user == label.user and _t(e) < label.start}
        tickets = [e for e in _window(events, label) if e.action == "4769" and e.type == pb.EVENT_TYPE_HOST_ACCESS]
        assert len({e.destination_host for e in tickets} - before) >= 8
        assert label.end - label.start >= timedelta(hours=1)


def test_share_enumeration_lists_many_shares_in_minutes_many_refused(attacked):
    sim, events = attacked
    for label in _labels(sim, "share_enumeration"):
        listed = [e for e in _window(events, label) if e.action in ("5140", "5145")]
        assert len({e.destination_host for e in listed}) >= 15 and len({e.object for e in listed}) >= 30
        assert any(e.outcome == pb.OUTCOME_FAILURE for e in listed)
        assert label.end - label.start <= timedelta(minutes=30)


def test_return_from_leave_follows_ten_quiet_days(attacked):
    sim, events = attacked
    for label in _labels(sim, "return_from_leave"):
        away = timedelta(days=label.details["days_away"] - 1)
        quiet = [e for e in events if e.user == label.user and label.start - away <= _t(e) < label.start - timedelta(days=1)]
        assert not quiet and label.details["days_away"] >= 10
        window = _window(events, label)
        assert any(e.type == pb.EVENT_TYPE_PASSWORD_CHANGE for e in window)
        assert any(e.outcome == pb.OUTCOME_FAILURE for e in window)


def test_vpn_traveller_is_seen_in_two_places_far_apart_within_minutes(attacked):
    sim, events = attacked
    for label in _labels(sim, "vpn_traveller"):
        window = [e for e in _window(events, label) if e.type == pb.EVENT_TYPE_APP_ACCESS]
        jumps = [(a, b) for a, b in zip(window, window[1:])
                 if haversine_km(a.geo.latitude, a.geo.longitude, b.geo.latitude, b.geo.longitude) >= 300
                 and _t(b) - _t(a) <= timedelta(minutes=30)]
        assert len(jumps) >= 2, label


def test_on_call_night_is_at_night_on_the_users_own_servers(attacked):
    sim, events = attacked
    users = {u.name: u for u in sim.users}
    for label in _labels(sim, "on_call_night"):
        user = users[label.user]
        window = _window(events, label)
        assert 0 <= _t(window[0]).astimezone(ZoneInfo(user.timezone)).hour < 5
        hosts = {e.destination_host for e in window if e.type == pb.EVENT_TYPE_HOST_ACCESS}
        assert hosts and hosts <= set(user.usual_servers)


def test_new_laptop_is_the_users_host_from_that_day_on(attacked):
    sim, events = attacked
    for label in _labels(sim, "new_laptop"):
        host = label.details["host"]
        assert not [e for e in events if e.user == label.user and e.source_host == host and _t(e) < label.start]
        later = {e.source_host for e in events if e.user == label.user and _t(e) > label.end
                 and e.producer == "winevent" and e.source_host}
        assert later == {host}
        downloads = [e for e in _window(events, label) if e.type == pb.EVENT_TYPE_FILE_DOWNLOAD]
        assert len(downloads) >= 150


@pytest.mark.parametrize("users,days", [(1, 1), (2, 9), (5, 3)])
def test_tiny_organisations_still_simulate(users, days):
    sim = simulate(SimulationConfig(users=users, days=days, seed=1))
    events = list(sim.events())
    assert events
    assert {label.user for label in sim.labels} <= {u.name for u in sim.users}
