"""A password spray slow enough that no short window sees it: one attempt per account every
25 minutes from one address (issue 15, items 3 and 4). The long window (`spray_interval_seconds`)
judges distinct accounts per source over a day against the tenant's own source-days."""

from __future__ import annotations

from services.profiles.defaults import DEFAULT_PROFILES
from services.profiles.evaluator import ProfileEvaluator
from tests.profiles.dbutil import add_profile, insert_events
from tests.profiles.factory import detector, event
from tests.profiles.test_event_time import anomaly_keys, uninterrupted_run

DAY = 86400
SPRAYER = "198.51.100.7"
(DEFAULTS,) = [p.parameters for p in DEFAULT_PROFILES if p.kind == "failed_logins"]


def failed_logins(**overrides):
    """The built-in profile's parameters (count 10 in 15 minutes, floor 5 accounts)."""
    return detector("failed_logins", risk_score=50, **(DEFAULTS | overrides))


def slow_spray(accounts, start=0, step=25 * 60, source_ip=SPRAYER, first=0):
    return [event(f"target{first + i}", "logon", start + i * step, outcome="failure", source_ip=source_ip,
                  failure_reason="bad_password") for i in range(accounts)]


def organisation(days, sources=20, accounts=lambda s, d: 1 + (s + d) % 2, attempts=3):
    """`sources` addresses failing every working day on `accounts(s, d)` accounts, `attempts`
    times each, spread over the day: a few mistyped passwords, never a burst."""
    out = []
    for d in range(days):
        for s in range(sources):
            n = accounts(s, d)
            for a in range(n * attempts):
                at = d * DAY + 8 * 3600 + s * 60 + a * (9 * 3600 // (n * attempts))
                out.append(event(f"staff{s}-{a % n}", "logon", at, outcome="failure", source_ip=f"203.0.113.{s + 1}"))
    return sorted(out, key=lambda e: e.ts)


def by_entity(fired):
    latest = list({f.dedup_key: f for f in fired}.values())  # each finding as last refreshed
    return [f for f in latest if f.entity_type == "ip"], [f for f in latest if f.entity_type == "user"]


def test_a_slow_spray_is_one_finding_of_its_address_with_every_account_linked():
    d = failed_logins()
    (source,), linked = by_entity(d.process(slow_spray(8)))
    assert (source.entity, source.user, source.evidence["pattern"]) == (SPRAYER, "", "password_spray")
    assert source.evidence["group"] == f"slow:{SPRAYER}" and source.evidence["interval_seconds"] == DAY
    assert source.evidence["count"] == 8 and source.evidence["users"] == [f"target{i}" for i in range(8)]
    assert "from 09:00:00 to 11:55:00 over 2.9 hours (slow: judged over 1 day)" in source.description
    assert sorted(f.user for f in linked) == [f"target{i}" for i in range(8)]
    assert all(f.risk_score == 25 and f.evidence["source_entity"] == {"type": "ip", "entity": SPRAYER} for f in linked)


def test_the_spray_going_on_at_its_pace_grows_the_same_finding():
    d = failed_logins()
    fired = d.process(slow_spray(8))
    fired += d.process(slow_spray(4, start=8 * 25 * 60, first=8))
    (source,), linked = by_entity(fired)
    assert source.evidence["count"] == 12 and len(linked) == 12


def test_the_same_accounts_spread_over_two_days_or_below_the_floor_are_quiet():
    assert by_entity(failed_logins().process(slow_spray(4))) == ([], [])
    # Eight accounts, one every 6.5 hours: no day holds five.
    assert by_entity(failed_logins().process(slow_spray(8, step=6.5 * 3600))) == ([], [])
    assert by_entity(failed_logins(spray_interval_seconds=0).process(slow_spray(8))) == ([], [])


def test_a_busy_ordinary_address_of_the_organisation_is_quiet():
    # A month of 20 addresses failing on 1-2 accounts a day, one of them 40 times a day.
    history = organisation(30) + [event(f"kiosk{i % 2}", "logon", d * DAY + 7 * 3600 + i * 1200, outcome="failure",
                                        source_ip="192.0.2.80") for d in range(30) for i in range(40)]
    d = failed_logins()
    assert d.process(sorted(history, key=lambda e: e.ts)) == []
    (source,), _ = by_entity(d.process(slow_spray(8, start=30 * DAY + 9 * 3600)))
    assert source.entity == SPRAYER


def test_the_long_window_threshold_rises_where_sources_often_fail_on_many_accounts_a_day():
    # One address in twenty fails on eight accounts a day, spread over it (a shared terminal room):
    # a day's eight is usual here, so a slow spray needs nine, while the interval's figure stays 5.
    history = organisation(30, accounts=lambda s, d: 8 if s == 0 else 1)
    d = failed_logins()
    d.process(history)
    assert (d.spray_threshold(), d.slow_spray_threshold()) == (5, 9)
    later = 30 * DAY + 9 * 3600
    assert by_entity(d.process(slow_spray(8, start=later))) == ([], [])
    (source,), linked = by_entity(d.process(slow_spray(9, start=later, source_ip="198.51.100.8")))
    assert source.evidence["spray_threshold"] == 9 and len(linked) == 9
    assert failed_logins().slow_spray_threshold() == 5  # without that history, the floor


def test_a_success_from_the_spraying_address_during_the_slow_spray_is_the_high_risk_finding():
    d = failed_logins()
    fired = d.process(slow_spray(8) + [
        event("target3", "logon", 7 * 25 * 60 + 20 * 60, outcome="success", source_ip=SPRAYER),
        event("bystander", "logon", 7 * 25 * 60 + 21 * 60, outcome="success", source_ip="198.51.100.99"),
    ])
    (success,) = [f for f in fired if f.evidence.get("success_event_id")]
    assert (success.user, success.risk_score) == ("target3", DEFAULTS["success_risk_score"])
    assert success.evidence["source_entity"] == {"type": "ip", "entity": SPRAYER}
    assert "password spray" in success.description


def test_restarts_during_a_slow_spray_raise_what_one_uninterrupted_run_raises(fresh_database_url, fresh_engine):
    add_profile(fresh_engine, "failed_logins", **DEFAULTS)
    # 70 accounts over 29 hours: later restarts replay a day that no longer holds the spray's start.
    stream = slow_spray(70) + organisation(2, sources=5)
    insert_events(fresh_database_url, sorted(stream, key=lambda e: e.ts), per_transaction=5)
    while ProfileEvaluator(fresh_engine, batch_events=5, seed_defaults=False).run_once():
        pass  # a new process for every batch: each warms up from the store and restores the fired windows
    restarted = anomaly_keys(fresh_engine)
    assert restarted == uninterrupted_run(fresh_engine, batch_events=5)
    sources = [key for _, key in restarted if f"|slow:{SPRAYER}|" in key]
    assert len(sources) == 1 and len(restarted) == 71  # the source's finding and its 70 accounts'


def test_a_spray_wider_than_the_organisation_ever_saw_carries_the_risk_of_its_rarity():
    # 30 days of 20 addresses failing on 1-2 accounts a day: 600 source-days, none near 8 accounts.
    history = organisation(30)
    d = failed_logins()
    assert d.process(history) == []
    (source,), linked = by_entity(d.process(slow_spray(8, start=30 * DAY + 9 * 3600)))
    # Nearly every day-long window of a source reaches a second account, so the fitted tail says
    # little; none of the ~600 as wide says about 1 in 600: above the profile's 50, short of critical.
    rarity = source.evidence["rarity"]
    assert rarity["source_windows"] == 0 and 500 <= rarity["of"] <= 600
    assert rarity["per_account_decades"] < 0.1 and 2.7 <= rarity["decades"] <= 2.8
    assert 80 <= source.risk_score < 90
    # The accounts keep the linked share of the profile's risk: the attack is the source's.
    assert {f.risk_score for f in linked} == {25}


def test_where_sources_never_fail_on_a_second_account_a_spray_is_critical_for_its_address():
    history = organisation(30, accounts=lambda s, d: 1)
    d = failed_logins()
    assert d.process(history) == []
    (source,), _ = by_entity(d.process(slow_spray(8, start=30 * DAY + 9 * 3600)))
    # Each further account multiplies the tail by about 1/600: far beyond what 600 windows can count.
    rarity = source.evidence["rarity"]
    assert rarity["per_account_decades"] > 2.7 and rarity["decades"] > 7 * 2.7
    assert source.risk_score == 100


def test_a_new_tenant_judges_a_spray_by_a_one_in_two_tail_per_account():
    (fresh,), _ = by_entity(failed_logins().process(slow_spray(8)))
    assert fresh.evidence["rarity"] == {"source_windows": 0, "of": 0, "per_account_decades": 0.301, "decades": 2.107}
    assert fresh.risk_score == 56
    (narrow,), _ = by_entity(failed_logins().process(slow_spray(5)))
    assert narrow.risk_score == 50  # 1.2 decades: the profile's own risk is the floor
