import pytest

from ueba.risk import MAX_RISK, bounded_risk, risk_level, user_risk


@pytest.mark.parametrize("score,level", [(0, "low"), (39, "low"), (40, "medium"), (69, "medium"), (70, "high"), (89, "high"), (90, "critical"), (100, "critical")])
def test_levels_at_their_boundaries(score, level):
    assert risk_level(score) == level


def test_one_finding_is_its_own_score_and_never_the_top_of_the_scale():
    assert bounded_risk([95]) == 95
    assert bounded_risk([40]) == 40
    assert bounded_risk([100]) == 97
    assert bounded_risk([]) == 0


def test_independent_findings_raise_risk_with_diminishing_weight():
    assert bounded_risk([70, 70]) == 80
    assert bounded_risk([90, 70]) == 94
    assert bounded_risk([70]) < bounded_risk([70, 50]) < bounded_risk([70, 70]) < bounded_risk([70, 70, 70])


def test_many_weak_findings_never_outrank_one_serious_one():
    assert bounded_risk([20] * 1000) == 20
    assert bounded_risk([30] * 1000) < 40
    assert bounded_risk([50] * 1000) < bounded_risk([90])


def test_risk_never_saturates_so_the_top_still_ranks():
    assert bounded_risk([100] * 1000) == MAX_RISK
    assert bounded_risk([95, 95]) > bounded_risk([95, 70]) > bounded_risk([95])


def test_reviewing_the_strongest_finding_moves_risk_visibly():
    assert bounded_risk([90, 60, 30]) - bounded_risk([60, 30]) >= 25


def test_order_of_input_does_not_matter():
    assert bounded_risk([10, 80, 30]) == bounded_risk([80, 30, 10])


def test_user_risk_sums_points():
    assert user_risk([50, 30]) == (80, bounded_risk([50, 30]), "medium")
