"""Detector memory follows places, entities and the window, not the number of events.

A soak test found the shared-credentials detector holding every event of its
hour (about 1.1 KB each). Each detector here takes a stream of one user from one
place (200,000 events for shared credentials, 50,000 for the others, spanning
almost three hours: several of every window) and must end up holding a handful
of entries (counted, not measured in bytes or time).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.profiles.factory import NEW_YORK, T0, TOKYO, detector, event

SPAN = 10_000.0  # seconds each stream spans
MB = 1024 * 1024

# kind, detector parameters, fields of every event, most entries it may hold at the end, events.
CASES = [
    ("shared_credentials", {}, {"event_type": "app_access", "place": NEW_YORK, "source_ip": "198.51.100.7"}, 2, 200_000),
    ("shared_credentials", {"max_addresses": 5}, {"event_type": "app_access", "place": NEW_YORK, "source_ip": "198.51.100.7"}, 2, 50_000),
    ("proximity", {}, {"event_type": "logon", "place": NEW_YORK}, 4, 50_000),
    ("risky_countries", {}, {"event_type": "logon", "place": (55.75, 37.62, "RU", "Moscow")}, 4, 50_000),
    ("bulk_download", {}, {"event_type": "file_download", "file_count": 1, "bytes": 1000}, 2 * 200 + 4, 50_000),
    ("custom_threshold", {"filter": {"event_type": "privilege_use"}}, {"event_type": "privilege_use"}, 2 * 50 + 4, 50_000),
    ("failed_logins", {}, {"event_type": "logon", "outcome": "failure", "source_ip": "203.0.113.5"}, 2 * 256 + 8, 50_000),
    ("rare_event", {}, {"event_type": "app_access", "application": "Outlook", "place": NEW_YORK}, 8, 50_000),
    ("data_exfiltration", {}, {"event_type": "file_upload", "application": "Dropbox", "bytes": MB, "department": "sales"}, 8, 50_000),
]


@pytest.mark.parametrize("kind,params,fields,bound,events", CASES, ids=[f"{c[0]}{'-' + '-'.join(c[1]) if c[1] else ''}" for c in CASES])
def test_one_user_at_one_place_holds_a_few_entries(kind, params, fields, bound, events):
    d = detector(kind, **params)
    # Long-memory kinds judge only users past their learning days.
    d.seed_users([("alice", "sales", T0 - timedelta(days=60))])
    fields = dict(fields)
    event_type = fields.pop("event_type")
    step = SPAN / events
    fired = 0
    for i in range(events):
        fired += len(d.process([event("alice", event_type, i * step, **fields)]))
    assert d.retained() <= bound, f"{kind} holds {d.retained()} entries after {events} events"
    if kind in ("bulk_download", "custom_threshold", "failed_logins", "data_exfiltration", "risky_countries"):
        assert fired > 0  # the windows still fire: they were exercised, not bypassed


def test_shared_credentials_holds_one_entry_per_move_and_still_fires():
    d = detector("shared_credentials", interval_seconds=3600, min_distance_km=500)
    fired = []
    # A long stay in New York, a stretch in Tokyo, then New York again: three runs, one anomaly.
    for i in range(50_000):
        fired += d.process([event("gus", "app_access", i * 0.05, NEW_YORK)])
    for i in range(50_000, 50_100):
        fired += d.process([event("gus", "app_access", i * 0.05, TOKYO)])
    assert fired == [] and d.retained() == 2
    for i in range(50_100, 50_200):
        fired += d.process([event("gus", "app_access", i * 0.05, NEW_YORK)])
    assert len(fired) == 1
    assert [x["city"] for x in fired[0].evidence["locations"]] == ["New York", "Tokyo", "New York"]
    assert d.retained() <= 3


def test_a_window_group_that_never_fires_is_still_bounded():
    # Two accounts failing from one address never make a spray (too few accounts): the
    # address's entries are never consumed, yet it holds at most its bound.
    d = detector("failed_logins", count=10, spray_users=10)
    for i in range(20_000):
        d.process([event(f"user{i % 2}", "logon", i * 0.01, outcome="failure", source_ip="203.0.113.5")])
    assert d.retained() <= 3 * 256 + 8
