"""Normal behaviour has regularity and noise, and a clean organisation has no attack traits."""

from __future__ import annotations

import collections
import statistics
from datetime import date, timedelta, timezone
from zoneinfo import ZoneInfo

from ueba.simulator import EXFIL_APPS, RISKY_COUNTRIES, SimulationConfig, simulate
from ueba.simulator.world import OCCASIONAL_APPS, haversine_km, is_holiday
from ueba.v1 import common_pb2 as pb

AIRLINER_LIMIT_KMH = 900.0  # cruise speed; gate to gate is slower still


def _by_user(events):
    out = collections.defaultdict(list)
    for e in events:
        out[e.user].append(e)
    return out


def _local(e, tz: str):
    return e.time.ToDatetime(tzinfo=timezone.utc).astimezone(ZoneInfo(tz))


def _fastest_journeys(events):
    journeys = 0
    for user, evs in _by_user(events).items():
        for prev, e in zip(evs, evs[1:]):
            km = haversine_km(prev.geo.latitude, prev.geo.longitude, e.geo.latitude, e.geo.longitude)
            if km < 50:
                continue
            journeys += 1
            hours = (e.time.ToMicroseconds() - prev.time.ToMicroseconds()) / 3.6e9
            assert hours > 0 and km / hours <= AIRLINER_LIMIT_KMH, (user, prev.geo.city, e.geo.city, km, hours)
    return journeys


def test_travellers_never_move_faster_than_an_airliner(clean):
    _, events = clean
    assert _fastest_journeys(events) > 20  # there were journeys to check


def test_everyone_travelling_never_moves_faster_than_an_airliner():
    """Every user a traveller: long-haul flights east and west, evenings after landing, weekends away."""
    sim = simulate(SimulationConfig(users=30, days=45, seed=8, scenarios=False, traveller_share=1.0))
    assert _fastest_journeys(sim.events()) > 100


def test_travellers_go_abroad_and_others_stay_in_their_country(clean):
    sim, events = clean
    users = {u.name: u for u in sim.users}
    abroad = collections.Counter()
    for e in events:
        u = users[e.user]
        if e.geo.country_code != u.home_country:
            assert u.traveller, (e.user, e.geo.country_code)  # VPN exits stay in the home country
            abroad[e.user] += 1
    assert len(abroad) >= 3


def test_mistyped_passwords_give_at_most_three_failures_in_a_row(clean):
    _, events = clean
    failures = 0
    for user, evs in _by_user(events).items():
        run = 0
        for e in evs:
            if e.type == pb.EVENT_TYPE_LOGON:
                run = run + 1 if e.outcome == pb.OUTCOME_FAILURE else 0
                failures += e.outcome == pb.OUTCOME_FAILURE
                assert run <= 3, user
    assert failures > 10  # the noise is there


def test_clean_organisation_has_no_attack_traits(clean):
    sim, events = clean
    assert sim.labels == []
    assert not [e for e in events if e.geo.country_code in RISKY_COUNTRIES]
    assert not [e for e in events if e.application in EXFIL_APPS]
    assert not [e for e in events if e.source_host.startswith("DESKTOP-")]


def test_work_happens_in_each_users_own_working_hours(clean):
    sim, events = clean
    users = {u.name: u for u in sim.users}
    checked = 0
    for name, evs in _by_user(events).items():
        u = users[name]
        if u.traveller or len(evs) < 200:
            continue
        inside = 0
        for e in evs:
            t = _local(e, u.timezone)
            hour = t.hour + t.minute / 60
            inside += u.work_start_hour - 1.5 <= hour <= u.work_start_hour + u.work_hours + 1.5
        assert inside / len(evs) >= 0.85, (name, inside / len(evs))
        checked += 1
    assert checked >= 10


def test_weekends_and_public_holidays_are_quiet(clean):
    sim, events = clean
    users = {u.name: u for u in sim.users}
    per_user_day = collections.Counter()
    for e in events:
        u = users[e.user]
        per_user_day[(e.user, _local(e, u.timezone).date())] += 1
    weekday, weekend, holiday = [], [], []
    for name, u in users.items():
        if u.traveller:
            continue
        for offset in range(1, 27):
            day = date(2026, 10, 1) + timedelta(days=offset)
            n = per_user_day.get((name, day), 0)
            if day.weekday() >= 5:
                weekend.append(n)
            elif is_holiday(u.home_country, day):
                holiday.append(n)
            else:
                weekday.append(n)
    assert holiday, "the period holds a public holiday for some user"
    assert statistics.mean(weekend) < 0.15 * statistics.mean(weekday)
    assert statistics.mean(holiday) < 0.15 * statistics.mean(weekday)


def test_events_per_working_day_are_realistic(clean):
    sim, events = clean
    users = {u.name: u for u in sim.users}
    per_user_day = collections.Counter((e.user, _local(e, users[e.user].timezone).date()) for e in events)
    busy = [n for (name, day), n in per_user_day.items() if day.weekday() < 5 and n >= 20]
    assert 50 <= statistics.mean(busy) <= 150


def test_each_user_has_a_stable_workstation_usual_servers_and_apps(clean):
    sim, events = clean
    users = {u.name: u for u in sim.users}
    for name, evs in _by_user(events).items():
        u = users[name]
        hosts = collections.Counter(e.source_host for e in evs)
        assert hosts.most_common(1)[0][1] >= 0.5 * len(evs)
        assert len(hosts) <= 2  # a new laptop at most
        servers = {e.destination_host for e in evs if e.type == pb.EVENT_TYPE_HOST_ACCESS}
        assert servers <= set(u.usual_servers)
        apps = [e.application for e in evs if e.type == pb.EVENT_TYPE_APP_ACCESS]
        usual = sum(a in u.usual_apps for a in apps)
        assert usual >= 0.95 * len(apps)
    rare = [e for e in events if e.type == pb.EVENT_TYPE_APP_ACCESS and e.application in OCCASIONAL_APPS
            and e.application not in users[e.user].usual_apps]
    assert rare  # the odd rarely used application


def test_file_sizes_are_heavy_tailed(clean):
    _, events = clean
    sizes = sorted(e.bytes for e in events if e.type == pb.EVENT_TYPE_FILE_DOWNLOAD)
    median = sizes[len(sizes) // 2]
    assert sizes[int(len(sizes) * 0.99)] > 20 * median
    assert sizes[-1] > 500 * median


def test_remote_days_come_through_vpn_exits_with_changing_addresses(clean):
    sim, events = clean
    vpn = [e for e in events if e.producer == "vpn" and e.type == pb.EVENT_TYPE_LOGON]
    assert vpn
    per_user = collections.defaultdict(set)
    for e in vpn:
        per_user[e.user].add(e.source_ip)
    assert any(len(ips) > 1 for ips in per_user.values())
    assert all(not ip.startswith("10.") for ips in per_user.values() for ip in ips)


def test_public_holidays_include_fixed_and_movable_days():
    assert is_holiday("US", date(2026, 11, 26)) and is_holiday("US", date(2026, 11, 27))  # Thanksgiving
    assert is_holiday("DE", date(2026, 10, 3)) and is_holiday("CA", date(2026, 10, 12))
    assert is_holiday("GB", date(2026, 8, 31)) and not is_holiday("GB", date(2026, 8, 24))
    assert not is_holiday("US", date(2026, 11, 25))
