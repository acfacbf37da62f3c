"""Generic outlier detectors on the same user-days: the peers the product has to beat.

Both are fitted on every user-day of the period (the baseline week included) without labels, as
someone would run them on a month of logs, and score the same user-days the product is judged on.
"""

from __future__ import annotations

from datetime import date

import numpy as np
from sklearn.ensemble import IsolationForest

from bench.evaluation.features import DayFeatures

PEERS: tuple[str, ...] = ("ecod", "isolation_forest")


def peer_scores(features: DayFeatures, keys: list[tuple[str, date]]) -> dict[str, dict[tuple[str, date], float]]:
    """{peer name: {user-day: score}} for the given user-days; higher is more anomalous."""
    every = features.keys()
    X = np.log1p(features.matrix(every))
    wanted = {key: i for i, key in enumerate(every)}
    rows = [wanted[k] for k in keys if k in wanted]
    scored = [k for k in keys if k in wanted]
    out = {}
    for name, scores in (("ecod", _ecod(X)), ("isolation_forest", _isolation_forest(X))):
        by_key = dict(zip(scored, scores[rows].tolist()))
        out[name] = {k: by_key.get(k, float(scores.min())) for k in keys}
    return out


def _ecod(X: np.ndarray) -> np.ndarray:
    from pyod.models.ecod import ECOD  # the eval extra; imported here so the rest runs without it

    return ECOD().fit(X).decision_scores_


def _isolation_forest(X: np.ndarray) -> np.ndarray:
    forest = IsolationForest(n_estimators=300, random_state=0).fit(X)
    return -forest.score_samples(X)
