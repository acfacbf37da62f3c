"""`make eval`'s run of one organisation, small: through real services, graded beside the peers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bench.evaluation.run import Organisation, evaluate

pytestmark = pytest.mark.e2e


def test_one_organisation_is_shipped_scored_read_back_and_graded(server_url, tmp_path):
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    org = Organisation(seed=99, users=30, days=10, start=today - timedelta(days=10), attacks_per_kind=1,
                       lookalikes_per_kind=1)
    run = evaluate(server_url, org, tmp_path / "logs")

    assert run["ingest"]["accepted"] == run["ingest"]["sent"] > 10_000
    assert run["scoring"]["user_scores"] > 0 and run["anomalies"] > 0
    graded = run["detectors"]
    assert set(graded) == {"product", "max_of_scales", "ecod", "isolation_forest"}
    sizes = {(g["user_days"], g["attack_user_days"]) for g in graded.values()}
    assert len(sizes) == 1  # every detector judged on the same user-days
    user_days, attack_days = sizes.pop()
    assert 0 < attack_days < user_days
    for g in graded.values():
        assert 0.0 <= g["roc_auc"] <= 1.0
        assert set(g["at_fpr"]) == {"0.005", "0.01"}
    risk = run["risk"]
    assert risk["users"] == 30 and sum(risk["levels"].values()) == 30
    assert risk["attacked_users"] == len(risk["attacked"]) > 0
