"""Grading one detector's user-day scores against the ground truth.

Ties are never broken in a detector's favour: a threshold flags only scores strictly above it, and
precision at k counts the user-days tied at the k-th score by their average.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import median

import numpy as np
from sklearn.metrics import roc_auc_score

from bench.evaluation.truth import Truth, UserDay

FPRS: tuple[float, ...] = (0.005, 0.01)
TOP_K = 20
LEVELS: tuple[str, ...] = ("low", "medium", "high", "critical")


def threshold_at_fpr(clean: np.ndarray, fpr: float) -> float:
    """The lowest threshold whose flags (score > threshold) take at most `fpr` of the clean user-days."""
    ordered = np.sort(clean)
    allowed = int(np.floor(fpr * len(ordered)))
    if allowed >= len(ordered):
        return float("-inf")
    return float(ordered[len(ordered) - allowed - 1])


def precision_at_k(scores: np.ndarray, positive: np.ndarray, k: int) -> float:
    """Expected share of attacks among the k highest scores, ties at the k-th taken in random order."""
    k = min(k, len(scores))
    if k == 0:
        return 0.0
    boundary = np.sort(scores)[::-1][k - 1]
    above, tied = scores > boundary, scores == boundary
    expected = positive[above].sum() + (k - above.sum()) * positive[tied].mean()
    return float(expected / k)


def grade(scores: dict[UserDay, float], keys: list[UserDay], truth: Truth) -> dict:
    s = np.array([scores.get(k, 0.0) for k in keys], dtype=float)
    y = np.array([truth.is_attack(k) for k in keys])
    by_key = dict(zip(keys, s))
    out = {
        "user_days": len(keys),
        "attack_user_days": int(y.sum()),
        "roc_auc": round(float(roc_auc_score(y, s)), 4) if 0 < y.sum() < len(y) else None,
        f"precision_at_{TOP_K}": round(precision_at_k(s, y, TOP_K), 3),
        "at_fpr": {},
    }
    for fpr in FPRS:
        t = threshold_at_fpr(s[~y], fpr)
        flagged = {k for k, v in by_key.items() if v > t}
        out["at_fpr"][str(fpr)] = _at_threshold(t, flagged, s, y, keys, truth)
    return out


def explain(scores: dict[UserDay, float], keys: list[UserDay], truth: Truth, notes: dict[UserDay, str],
            fpr: float = FPRS[-1], n: int = 10) -> dict:
    """The highest-scoring clean user-days, and the attacks left below the threshold at `fpr`."""
    s = np.array([scores.get(k, 0.0) for k in keys], dtype=float)
    y = np.array([truth.is_attack(k) for k in keys])
    t = threshold_at_fpr(s[~y], fpr)
    clean = sorted((k for k in keys if not truth.is_attack(k)), key=lambda k: -scores.get(k, 0.0))[:n]
    missed = []
    for i, label in enumerate(truth.attacks):
        days = truth.days_of(i)
        best = max(days, key=lambda k: scores.get(k, 0.0))
        if scores.get(best, 0.0) <= t:
            missed.append({"kind": label.kind, "user": label.user, "day": best[1].isoformat(),
                           "score": round(scores.get(best, 0.0), 2), "rank": 1 + int((s > scores.get(best, 0.0)).sum()),
                           "label": label.description[:160], "strongest": notes.get(best, "")})
    return {
        "threshold": None if t == float("-inf") else round(t, 4),
        "top_clean": [{"user": k[0], "day": k[1].isoformat(), "score": round(scores.get(k, 0.0), 2),
                       "lookalike": sorted(truth.lookalike_days.get(k, ())), "strongest": notes.get(k, "")}
                      for k in clean],
        "missed": missed,
    }


def _at_threshold(t: float, flagged: set[UserDay], s: np.ndarray, y: np.ndarray, keys: list[UserDay],
                  truth: Truth) -> dict:
    hit = [any(k in flagged for k in truth.days_of(i)) for i in range(len(truth.attacks))]
    per_kind: dict[str, list[bool]] = defaultdict(list)
    for label, found in zip(truth.attacks, hit):
        per_kind[label.kind].append(found)
    lookalike: dict[str, list[bool]] = defaultdict(list)
    graded = set(keys)
    for key, kinds in truth.lookalike_days.items():
        if key in graded:
            for kind in kinds:
                lookalike[kind].append(key in flagged)
    kind_recall = {kind: round(sum(v) / len(v), 3) for kind, v in sorted(per_kind.items())}
    return {
        "threshold": None if t == float("-inf") else round(t, 4),
        "fpr": round(float((s[~y] > t).mean()), 5) if (~y).any() else None,
        "user_day_recall": round(float((s[y] > t).mean()), 3) if y.any() else None,
        "scenario_recall": round(sum(hit) / len(hit), 3) if hit else None,
        "scenario_recall_mean_over_kinds": round(float(np.mean(list(kind_recall.values()))), 3) if kind_recall else None,
        "recall_by_kind": kind_recall,
        "scenarios_by_kind": {kind: len(v) for kind, v in sorted(per_kind.items())},
        "lookalikes_flagged": {kind: f"{sum(v)}/{len(v)}" for kind, v in sorted(lookalike.items())},
    }


def risk_distribution(risks: dict[str, tuple[int, str]], truth: Truth) -> dict:
    """How users' risk (0-100) and levels spread, and where the attacked users stand among the clean."""
    attacked = truth.attacked_users
    clean = [r for u, (r, _) in risks.items() if u not in attacked]
    median_clean = median(clean) if clean else 0
    ordered = sorted((r for r, _ in risks.values()), reverse=True)
    kinds: dict[str, set[str]] = defaultdict(set)
    for label in truth.attacks:
        if label.user in attacked:
            kinds[label.user].add(label.kind)
    users = []
    for user in sorted(attacked):
        risk, level = risks.get(user, (0, "low"))
        users.append({"user": user, "kinds": sorted(kinds[user]), "risk": risk, "level": level,
                      "rank": 1 + sum(1 for r in ordered if r > risk), "above_median_clean": risk > median_clean})
    levels = Counter(level for _, level in risks.values())
    attacked_levels = Counter(risks.get(u, (0, "low"))[1] for u in attacked)
    histogram = Counter(min(r // 10, 9) for r, _ in risks.values())
    return {
        "users": len(risks),
        "levels": {level: levels.get(level, 0) for level in LEVELS},
        "attacked_levels": {level: attacked_levels.get(level, 0) for level in LEVELS},
        "critical_share": round(levels.get("critical", 0) / max(len(risks), 1), 4),
        "histogram": {f"{10 * b}-{10 * b + 9 if b < 9 else 100}": histogram.get(b, 0) for b in range(10)},
        "median_clean_risk": median_clean,
        "attacked_users": len(attacked),
        "attacked_above_median_clean": sum(1 for u in users if u["above_median_clean"]),
        "attacked": users,
    }
