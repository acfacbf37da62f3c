"""The event stream's contract: deterministic, time-ordered, unique ids, populated fields."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from ueba.simulator import SimulationConfig, simulate, start_date
from ueba.v1 import common_pb2 as pb

START = datetime(2026, 10, 1, tzinfo=timezone.utc)


def _serialized(config: SimulationConfig) -> list[bytes]:
    return [e.SerializeToString(deterministic=True) for e in simulate(config).events()]


def test_same_seed_gives_the_same_events_and_labels():
    config = SimulationConfig(users=15, days=9, seed=3, start=START)
    first, second = simulate(config), simulate(config)
    assert _serialized(config) == [e.SerializeToString(deterministic=True) for e in second.events()]
    assert [label.to_dict() for label in first.labels] == [label.to_dict() for label in second.labels]
    assert first.users == second.users


def test_events_can_be_iterated_twice_with_the_same_result():
    sim = simulate(SimulationConfig(users=10, days=3, seed=2, start=START))
    assert [e.SerializeToString() for e in sim.events()] == [e.SerializeToString() for e in sim]


def test_another_seed_gives_other_events():
    a = _serialized(SimulationConfig(users=15, days=3, seed=3, start=START))
    b = _serialized(SimulationConfig(users=15, days=3, seed=4, start=START))
    assert a != b
    assert {e.user for e in simulate(SimulationConfig(users=15, days=1, seed=3)).events()} != \
        {e.user for e in simulate(SimulationConfig(users=15, days=1, seed=4)).events()}


def test_events_are_in_time_order_inside_the_period(attacked):
    sim, events = attacked
    times = [e.time.ToDatetime(tzinfo=timezone.utc) for e in events]
    assert times == sorted(times)
    assert times[0] >= sim.start and times[-1] < sim.start + timedelta(days=21)


def test_period_that_does_not_start_at_midnight():
    start = datetime(2026, 3, 28, 15, 30, tzinfo=timezone.utc)  # and across a daylight-saving change
    events = list(simulate(SimulationConfig(users=20, days=3, seed=1, start=start)).events())
    times = [e.time.ToDatetime(tzinfo=timezone.utc) for e in events]
    assert times == sorted(times)
    assert start <= times[0] and times[-1] < start + timedelta(days=3)


def test_event_ids_are_unique_and_differ_between_simulations(attacked):
    _, events = attacked
    ids = [e.event_id for e in events]
    assert len(set(ids)) == len(ids) and all(ids)
    other = next(iter(simulate(SimulationConfig(users=60, days=21, seed=12, start=START)).events()))
    assert other.event_id.rsplit("-", 1)[0] != ids[0].rsplit("-", 1)[0]


def test_event_ids_do_not_depend_on_the_start_and_tell_it():
    config = SimulationConfig(users=8, days=3, seed=5, start=START)
    moved = SimulationConfig(users=8, days=3, seed=5, start=START + timedelta(days=40))
    events = list(simulate(config).events())
    assert [e.event_id for e in events[:50]] == [e.event_id for e in itertools.islice(simulate(moved).events(), 50)]
    assert {start_date(e.event_id, e.time.ToDatetime(tzinfo=timezone.utc)) for e in events} == {START.date()}
    openers = set(config.day_opening_ids())
    assert openers == set(moved.day_opening_ids())
    assert {e.event_id for e in events} & openers  # a stored simulation always holds one of them
    with pytest.raises(ValueError):
        start_date("agent-17", START)


def test_events_carry_the_fields_detectors_use(attacked):
    sim, events = attacked
    departments = {u.name: u.department for u in sim.users}
    for e in events:
        assert e.user in departments and e.department == departments[e.user]
        assert e.type != pb.EVENT_TYPE_UNSPECIFIED and e.outcome != pb.OUTCOME_UNSPECIFIED
        assert e.producer and e.action and e.source_ip
        assert e.geo.country_code and e.geo.city and e.geo.has_coordinates
        assert (e.geo.latitude, e.geo.longitude) != (0.0, 0.0)
        if e.type in (pb.EVENT_TYPE_FILE_DOWNLOAD, pb.EVENT_TYPE_FILE_UPLOAD):
            assert e.bytes > 0 and e.file_count >= 1 and e.object and e.application
        if e.type in (pb.EVENT_TYPE_FILE_DELETE, pb.EVENT_TYPE_FILE_SHARE):
            assert e.file_count >= 1 and e.object and e.application
        if e.type == pb.EVENT_TYPE_HOST_ACCESS:
            assert e.destination_host and e.source_host
        if e.type == pb.EVENT_TYPE_APP_ACCESS:  # a Kerberos service ticket (4769) carries no user agent
            assert e.application and (e.user_agent or e.action == "4769")
        if e.type == pb.EVENT_TYPE_LOGON and e.producer == "winevent":
            assert e.logon_type in (2, 3, 7, 10)
        if e.outcome == pb.OUTCOME_FAILURE:
            assert e.failure_reason
    kinds = {e.type for e in events}
    assert kinds >= {pb.EVENT_TYPE_LOGON, pb.EVENT_TYPE_LOGOFF, pb.EVENT_TYPE_FILE_DOWNLOAD,
                     pb.EVENT_TYPE_FILE_UPLOAD, pb.EVENT_TYPE_FILE_DELETE, pb.EVENT_TYPE_FILE_SHARE,
                     pb.EVENT_TYPE_HOST_ACCESS, pb.EVENT_TYPE_APP_ACCESS, pb.EVENT_TYPE_PRIVILEGE_USE,
                     pb.EVENT_TYPE_ACCOUNT_CHANGE}
    assert {e.producer for e in events} >= {"winevent", "okta", "m365", "vpn"}


def test_events_stream_lazily():
    sim = simulate(SimulationConfig(users=500, days=365, seed=1, scenarios=False))
    first = list(itertools.islice(sim.events(), 10))  # a year is not generated to get ten events
    assert len(first) == 10


@pytest.mark.parametrize("kwargs", [
    {"users": 0}, {"days": 0}, {"scenario_counts": {"phishing": 1}}, {"scenario_counts": {"brute_force": -1}},
    {"typo_rate": 2.0}, {"departments": ()},
])
def test_bad_configuration_is_refused(kwargs):
    with pytest.raises(ValueError):
        SimulationConfig(**kwargs)


def test_naive_start_is_taken_as_utc():
    assert SimulationConfig(start=datetime(2026, 1, 5)).start == datetime(2026, 1, 5, tzinfo=timezone.utc)


def test_output_does_not_depend_on_string_hashing():
    """Two interpreters with different hash seeds produce the same events."""
    import subprocess
    import sys

    code = ("import hashlib\nfrom ueba.simulator import SimulationConfig, simulate\nh = hashlib.sha256()\n"
            "sim = simulate(SimulationConfig(users=12, days=9, seed=3))\n"
            "for e in sim.events(): h.update(e.SerializeToString(deterministic=True))\n"
            "for label in sim.labels: h.update(repr(label.to_dict()).encode())\nprint(h.hexdigest())\n")
    digests = {subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2")}
    assert len(digests) == 1
