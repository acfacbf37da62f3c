"""The calibrated user-day score: each source judged against the population, combined by dimension."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest

from services.scorer import calibration
from services.scorer.calibration import (Calibration, Reference, RuleFinding, day_score, joint_decades,
                                         population_tail)
from services.scorer.model_anomalies import DayRarity, anomaly_score, decisive_feature
from services.scorer.scoring import score_from_p, surprise_of_score
from ueba.risk import bounded_risk, ranked_evidence

DAY = date(2026, 11, 30)


def _reference(days: int, users: int, models: dict[str, np.ndarray], findings: list[RuleFinding] = ()) -> Reference:
    """`users` user-days on each of the `days` before DAY; models[m][i] is user-day i's strongest score of m."""
    on = np.array([(DAY - timedelta(days=1 + i // users)).toordinal() for i in range(days * users)], dtype=np.int64)
    maxima = {m: (np.arange(on.size, dtype=np.int64), np.asarray(s, dtype=np.float64)) for m, s in models.items()}
    return Reference(on, maxima, list(findings))


def test_surprise_of_score_inverts_the_score_scale():
    p = np.array([1e-1, 1e-2, 1e-4, 1e-6, 1e-8])
    assert surprise_of_score(score_from_p(p).astype(np.float64)) == pytest.approx(-np.log10(p), abs=0.06)


def test_population_tail_reads_the_quantiles_with_absent_sources_as_zero():
    # 1,000 user-days, 100 of them with the source: the 20% level is 0, the 5% level the 50th strongest.
    surprises = np.linspace(4.0, 1.0, 100)
    tail = population_tail(surprises, 1000)
    assert tail.low == 0.0 and tail.scale == pytest.approx(surprises[50])
    assert population_tail(surprises, calibration.MIN_REFERENCE - 1) is None


def test_what_is_common_in_the_organisation_is_not_rare_for_one_user():
    rng = np.random.default_rng(3)
    # Authentication scores of 50 (1e-3 nominally: a few typos) on a quarter of user-days,
    # data movement rarely above 20.
    auth = np.where(rng.random(2000) < 0.25, 50.0, 10.0)
    data = rng.uniform(1.0, 20.0, 2000)
    cal = Calibration(_reference(20, 100, {"authentication": auth, "data_movement": data}), days=30)
    typos = cal.evidence(DAY, {"authentication": 50.0, "data_movement": 10.0}, ())
    assert typos < 1.0  # nominally 3 decades; in this organisation, ordinary
    blatant = cal.evidence(DAY, {"authentication": 10.0, "data_movement": 100.0}, ())
    assert blatant == pytest.approx(8.0)  # beyond anything seen: the model's own surprise, no more
    assert day_score(blatant) > 85 > 50 > day_score(typos)


def test_a_rule_finding_counts_no_more_than_its_kind_is_rare():
    quiet = np.full(2000, 5.0)
    # 40 earlier incidents of failed logons at 50 among 2,000 user-days: about 1 in 50.
    earlier = [RuleFinding(f"u{i}", DAY - timedelta(days=2), "failed_logins", "authentication", 50, f"i{i}")
               for i in range(40)]
    # One spray over 30 accounts is one incident.
    earlier += [RuleFinding(f"v{i}", DAY - timedelta(days=3), "bulk_delete", "data", 60, "spray") for i in range(30)]
    cal = Calibration(_reference(20, 100, {"authentication": quiet}, earlier), days=30)
    common = RuleFinding("x", DAY, "failed_logins", "authentication", 50, "new")
    rare = RuleFinding("x", DAY, "bulk_delete", "data", 60, "new2")
    assert cal.evidence(DAY, {}, [common]) == pytest.approx(-np.log10(41 / 2001))
    assert cal.evidence(DAY, {}, [rare]) == pytest.approx(min(surprise_of_score(60.0), -np.log10(2 / 2001)))
    # Too few reference user-days: the nominal surprise.
    empty = Calibration(_reference(0, 0, {}), days=30)
    assert empty.evidence(DAY, {}, [common]) == pytest.approx(surprise_of_score(50.0))


def test_a_rarity_the_source_measured_is_not_bounded_by_the_count_of_user_days():
    quiet = np.full(2000, 5.0)
    cal = Calibration(_reference(20, 100, {"authentication": quiet}), days=30)
    # A spray's account: the source's finding at 97, rarer than anything 2,000 user-days can count.
    counted = RuleFinding("x", DAY, "failed_logins", "authentication", 97, "spray")
    measured = RuleFinding("x", DAY, "failed_logins", "authentication", 97, "spray", decades=17.1)
    assert cal.evidence(DAY, {}, [counted]) == pytest.approx(-np.log10(1 / 2001))
    assert cal.evidence(DAY, {}, [measured]) == pytest.approx(8.0)  # the most one source says
    # A measured rarity weaker than the count leaves the count.
    weak = RuleFinding("x", DAY, "failed_logins", "authentication", 97, "spray", decades=1.2)
    assert cal.evidence(DAY, {}, [weak]) == pytest.approx(-np.log10(1 / 2001))


def test_sources_of_one_dimension_count_once_and_further_dimensions_add_jointly():
    cal = Calibration(_reference(0, 0, {}), days=30)  # no population: nominal surprises
    origin = cal.evidence(DAY, {"origin_host": 70.0}, ())
    same_dimension = cal.evidence(DAY, {"origin_host": 70.0, "impacted_host": 70.0}, ())
    two_dimensions = cal.evidence(DAY, {"origin_host": 70.0, "origin_location": 70.0}, ())
    assert origin == pytest.approx(4.0) and same_dimension == pytest.approx(4.0)
    # Two independent 1e-4s: 1e-8 for the pair, less Fisher's correction for a product of two.
    assert two_dimensions == pytest.approx(joint_decades([4.0, 4.0])) and 6.5 < two_dimensions < 8.0
    finding = RuleFinding("x", DAY, "risky_countries", "location", 70, "i")
    assert cal.evidence(DAY, {"origin_location": 50.0}, [finding]) == pytest.approx(4.0)


def test_the_day_scale_is_linear_in_log_odds_and_never_reaches_100():
    assert day_score(calibration.HALF) == pytest.approx(50.0)
    assert day_score(calibration.NINETY) == pytest.approx(90.0)
    assert day_score(30.0) < 100.0 and day_score(20.0) < day_score(30.0)


def test_independent_sources_read_together_as_one_tail_probability():
    assert joint_decades([]) == 0.0 and joint_decades([3.0]) == 3.0 and joint_decades([3.0, 0.0, 0.0]) == 3.0
    # The pair's product, 1e-6, less Fisher's ln(1/t) + 1 for a product of two (1.14 decades),
    # plus log10(2 / 1): two sources hold one pair where they hold two single readings.
    assert joint_decades([3.0, 3.0]) == pytest.approx(6.0 - math.log10(1 + 6 * math.log(10)) + math.log10(2))
    # A weak second source adds nothing, and a pile of weak ones never outranks one strong source.
    assert joint_decades([5.0, 0.3]) == 5.0
    assert joint_decades([1.0] * 6) < joint_decades([4.0])
    # Looking at more sources costs: the same pair among six dimensions reads less than alone.
    assert joint_decades([3.0, 3.0, 0.0, 0.0, 0.0, 0.0]) < joint_decades([3.0, 3.0])
    # Order never matters, and more evidence in any source never lowers the day.
    assert joint_decades([1.0, 4.0, 2.0]) == joint_decades([4.0, 2.0, 1.0]) <= joint_decades([4.0, 2.5, 1.0])


def test_risk_adds_findings_strongest_first():
    assert ranked_evidence([]) == 0.0
    assert ranked_evidence([1.0, 3.0, 2.0]) == pytest.approx(3.0 + 2.0 / 4 + 1.0 / 9)
    assert ranked_evidence([3.0, 1.0], neutral=2.0) == 3.0
    assert bounded_risk([70, 70]) == 80 and bounded_risk([90, 70]) == 94 and bounded_risk([30] * 1000) < 40


def test_a_day_decided_by_accounts_failing_from_the_origin_is_charged_at_half():
    spray = [{"name": "max_accounts_failing_from_origin", "share": 0.8}, {"name": "new_source_ips", "share": 0.2}]
    quoted = [{"name": "login_time.active", "share": 0.1},
              {"name": "origin_host.max_accounts_failing_from_origin", "share": 0.7}]
    own = [{"name": "files_downloaded", "share": 0.9}, {"name": "max_accounts_failing_from_origin", "share": 0.1}]
    assert decisive_feature(spray) == "max_accounts_failing_from_origin"
    # One user in a thousand a month: 99 on its own, half where the source's pattern decides it.
    assert anomaly_score(decisive_feature(spray), 3.0) == 49
    assert anomaly_score(decisive_feature(quoted), 3.0) == 49
    assert anomaly_score(decisive_feature(own), 3.0) == 99
    assert decisive_feature([]) == "" and anomaly_score("", 0.0) == 10


def test_an_anomalys_risk_reads_how_rare_such_a_day_is_for_a_user_in_a_month():
    # One user in a hundred a month: critical's floor; one in ten: medium; half for a spray's pattern.
    assert anomaly_score("files_downloaded", 2.0) == 90
    assert anomaly_score("files_downloaded", 1.0) == 50
    assert anomaly_score("max_accounts_failing_from_origin", 1.0) == 25


def test_a_models_evidence_counts_in_the_dimension_of_the_feature_deciding_it():
    cal = Calibration(_reference(0, 0, {}), days=30)
    # A sync of a thousand files: the hour's event count (login_time), the events from the one
    # origin (origin_host) and the peers' view of both restate the data volume, and add nothing.
    burst = {"data_movement": 100.0, "login_time": 100.0, "origin_host": 100.0, "peer_group": 100.0}
    volume = {"login_time": "events", "origin_host": "max_from_one_origin", "peer_group": "peer_events"}
    assert cal.evidence(DAY, burst, (), volume) == pytest.approx(8.0)
    # The same scores decided by an unusual hour, a new origin and the peers' failed logons are
    # four independent dimensions.
    other = {"login_time": "active", "origin_host": "new_origins", "peer_group": "peer_failures"}
    assert cal.evidence(DAY, burst, (), other) == pytest.approx(joint_decades([8.0] * 4))
    assert joint_decades([8.0] * 4) > 20.0
    # Restating evidence still stands alone where it is the strongest.
    assert cal.evidence(DAY, {"login_time": 100.0, "authentication": 50.0}, (), {"login_time": "events"}) \
        == pytest.approx(8.0)
    # The corroboration model combines two others: it never adds to them.
    assert cal.evidence(DAY, {"corroboration": 70.0, "origin_location": 70.0}, ()) == pytest.approx(4.0)
    # Without the deciding feature, a model's evidence is in its own dimension.
    assert cal.evidence(DAY, {"origin_host": 70.0, "origin_location": 70.0}, ()) == pytest.approx(joint_decades([4.0, 4.0]))


def test_a_days_rarity_is_read_per_user_and_month():
    before = DAY - timedelta(days=1)
    # 200 users scored on each of the 30 days before; one earlier bulk download at 95.
    rows = [(f"u{u}", before - timedelta(days=d), 20.0) for u in range(200) for d in range(30)]
    rows[0] = ("u0", before, 95.0)
    rarity = DayRarity(rows, days=30)
    # The strongest of 6,000 user-days, for a user scored 30 days a month: one user in about 200.
    assert rarity.decades(DAY, 97.0) == pytest.approx(math.log10(6001 / 30))
    # As strong as one earlier day: one in about 100, critical's floor.
    assert rarity.decades(DAY, 95.0) == pytest.approx(math.log10(6001 / 2 / 30))
    assert anomaly_score("files_downloaded", rarity.decades(DAY, 95.0)) == 90
    # Users scored on half the days: a month holds half as many chances.
    half = DayRarity([r for r in rows if int(r[0][1:]) % 2 == int((DAY - r[1]).days) % 2], days=30)
    assert half.decades(DAY, 97.0) == pytest.approx(math.log10(3001 / 15))
    # Three days behind the organisation's first: what a month of such days would show, not more.
    first = DayRarity([r for r in rows if (DAY - r[1]).days <= 3], days=30)
    assert first.decades(DAY, 97.0) == pytest.approx(math.log10(601 / 30))
    # A host of five accounts cannot make a day rare: low, whatever the day's own score.
    few = DayRarity([r for r in rows if int(r[0][1:]) < 5], days=30)
    assert anomaly_score("files_downloaded", few.decades(DAY, 97.0)) < 40
    # Nothing before: nothing is rare.
    assert rarity.decades(before - timedelta(days=40), 97.0) == 0.0
