"""Grading: thresholds and precision never favour a detector on ties, look-alikes count as clean,
and features see only events, in event order."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from bench.evaluation.features import FEATURES, DayFeatures
from bench.evaluation.metrics import explain, grade, precision_at_k, risk_distribution, threshold_at_fpr
from bench.evaluation.truth import Truth
from ueba.simulator import Label
from ueba.v1 import common_pb2 as pb

T0 = datetime(2026, 10, 10, 9, tzinfo=timezone.utc)


def _label(kind: str, user: str, start: datetime, hours: float = 1.0, **details) -> Label:
    return Label(kind, user, start, start + timedelta(hours=hours), kind, details=details)


def test_threshold_flags_at_most_the_allowed_share_of_clean_user_days():
    clean = np.arange(1.0, 201.0)
    t = threshold_at_fpr(clean, 0.01)
    assert (clean > t).sum() == 2
    assert (clean > threshold_at_fpr(clean, 0.005)).sum() == 1


def test_a_detector_that_ties_everything_flags_nothing():
    clean = np.full(500, 5.0)
    assert not (clean > threshold_at_fpr(clean, 0.01)).any()


def test_precision_at_k_counts_ties_at_the_boundary_by_their_average():
    scores = np.array([3.0, 2.0, 2.0, 2.0])
    positive = np.array([True, False, True, False])
    assert precision_at_k(scores, positive, 2) == pytest.approx((1 + 1 / 3) / 2)
    assert precision_at_k(np.ones(40), np.arange(40) < 10, 20) == pytest.approx(0.25)


def test_truth_spans_every_utc_day_of_a_label_and_keeps_look_alikes_clean():
    truth = Truth.from_labels([
        _label("brute_force", "ann", T0.replace(hour=23), hours=2),
        _label("new_laptop", "bob", T0),
        _label("password_spray", "cat", T0, succeeded=False),
        _label("password_spray", "dan", T0, succeeded=True),
    ])
    assert set(truth.attack_days) == {("ann", date(2026, 10, 10)), ("ann", date(2026, 10, 11)),
                                      ("cat", date(2026, 10, 10)), ("dan", date(2026, 10, 10))}
    assert truth.lookalike_days == {("bob", date(2026, 10, 10)): {"new_laptop"}}
    assert not truth.is_attack(("bob", date(2026, 10, 10)))
    assert truth.attacked_users == {"ann", "dan"}  # a failed spray attempt is the source's doing


def _keys(n_users: int) -> list[tuple[str, date]]:
    return [(f"u{i:03d}", date(2026, 10, 10)) for i in range(n_users)]


def test_a_perfect_ranking_finds_every_scenario_and_a_look_alike_hunter_finds_none():
    keys = _keys(300)
    truth = Truth.from_labels([_label("mass_deletion", "u000", T0), _label("risky_country", "u001", T0),
                               _label("on_call_night", "u002", T0)])
    perfect = grade({keys[0]: 10.0, keys[1]: 9.0}, keys, truth)
    assert perfect["roc_auc"] == 1.0 and perfect["precision_at_20"] == pytest.approx(0.1)
    assert perfect["at_fpr"]["0.005"]["scenario_recall"] == 1.0
    hunter = grade({keys[2]: 10.0}, keys, truth)["at_fpr"]["0.01"]
    assert hunter["scenario_recall"] == 0.0 and hunter["lookalikes_flagged"] == {"on_call_night": "1/1"}


def test_explanation_names_the_loudest_clean_user_days_and_the_missed_attacks():
    keys = _keys(300)
    truth = Truth.from_labels([_label("mass_deletion", "u000", T0), _label("risky_country", "u001", T0)])
    scores = {keys[0]: 90.0, keys[1]: 40.0, keys[5]: 80.0, keys[6]: 70.0, keys[7]: 60.0}
    seen = explain(scores, keys, truth, {keys[5]: "failed_logins 80: 3 failures"})
    assert [row["user"] for row in seen["top_clean"][:3]] == ["u005", "u006", "u007"]
    assert seen["top_clean"][0]["strongest"] == "failed_logins 80: 3 failures"
    assert [(row["kind"], row["rank"]) for row in seen["missed"]] == [("risky_country", 5)]


def test_risk_distribution_places_attacked_users_among_the_clean():
    truth = Truth.from_labels([_label("bulk_download", "u000", T0)])
    risks = {"u000": (95, "critical"), "u001": (10, "low"), "u002": (50, "medium"), "u003": (96, "critical")}
    dist = risk_distribution(risks, truth)
    assert dist["levels"] == {"low": 1, "medium": 1, "high": 0, "critical": 2}
    assert dist["attacked_levels"]["critical"] == 1 and dist["median_clean_risk"] == 50
    assert dist["attacked"][0]["rank"] == 2 and dist["attacked_above_median_clean"] == 1
    assert dist["histogram"]["90-100"] == 2 and sum(dist["histogram"].values()) == 4


def _event(user: str, when: datetime, host: str, outcome=pb.OUTCOME_SUCCESS) -> pb.Event:
    e = pb.Event(user=user, type=pb.EVENT_TYPE_HOST_ACCESS, outcome=outcome, destination_host=host,
                 source_ip="10.0.0.1")
    e.time.FromDatetime(when)
    return e


def test_features_judge_novelty_against_earlier_days_only():
    f = DayFeatures()
    events = [_event("ann", T0, "fs-01"), _event("ann", T0 + timedelta(days=1), "fs-01"),
              _event("ann", T0 + timedelta(days=1, hours=1), "db-02", pb.OUTCOME_FAILURE)]
    assert list(f.observe(events)) == events
    day1, day2 = f.matrix([("ann", T0.date()), ("ann", (T0 + timedelta(days=1)).date())])
    column = {name: i for i, name in enumerate(FEATURES)}
    assert day1[column["new_destination_hosts"]] == 1 and day2[column["new_destination_hosts"]] == 1
    assert day2[column["destination_hosts"]] == 2 and day2[column["failed_host_accesses"]] == 1
    assert day1[column["events_in_new_hours"]] == 1 and day2[column["events_in_new_hours"]] == 1
    assert not f.matrix([("bob", T0.date())]).any()
