import pytest

from ueba.risk import bounded_risk, risk_level, user_risk


@pytest.mark.parametrize("score,level", [(0, "low"), (39, "low"), (40, "medium"), (69, "medium"), (70, "high"), (89, "high"), (90, "critical"), (100, "critical")])
def test_levels_at_their_boundaries(score, level):
    assert risk_level(score) == level


def test_highest_anomaly_dominates():
    assert bounded_risk([95]) == 95
    assert bounded_risk([20] * 10) == 40
    assert bounded_risk([20] * 1000) < 60  # many small ones never reach one critical
    assert bounded_risk([100, 100, 100]) == 100
    assert bounded_risk([]) == 0


def test_order_of_input_does_not_matter():
    assert bounded_risk([10, 80, 30]) == bounded_risk([80, 30, 10])


def test_user_risk_sums_points():
    assert user_risk([50, 30]) == (80, round(50 + 30 / 2**1.5), "medium")
