"""Detection quality of the behaviour models (`make eval`).

Simulates a labelled organisation (a seed the tests do not use), ingests it
through the ingest pipeline, scores every day after the baseline week, and
reports per scenario kind: recall at score 70, the user-day false-positive
rate, precision at 20 and ROC AUC over user-days. The same hourly features,
summed per user-day, are scored by an IsolationForest as a baseline and
reported beside, at the same false-positive rate. Calibration: the share of
clean users' scored user-hours that reach 70.

Writes eval-results/detection.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from bench import DATA
from ueba.store.databases import postgres_server, scratch_database
from ueba.db import create_db_engine, libpq_url

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "eval-results"
SEED = 4242  # not used by any test
THRESHOLD = 70.0


def ingest(url: str, sim, batch: int = 5000) -> dict:
    """Through the ingest pipeline (validation, normalisation, dedup, COPY), as agents' events arrive."""
    from services.ingest.pipeline import IngestPipeline
    from services.ingest.settings import IngestSettings

    engine = create_db_engine(url, pool_size=2)
    settings = IngestSettings.from_env({"DATABASE_URL": url, "UEBA_MAX_PAST_DAYS": "0"})
    pipeline = IngestPipeline(settings, engine)
    totals = defaultdict(int)
    chunk = []
    for event in sim.events():
        chunk.append(event)
        if len(chunk) == batch:
            _ack(pipeline.ingest("default", chunk), totals, len(chunk))
            chunk = []
    if chunk:
        _ack(pipeline.ingest("default", chunk), totals, len(chunk))
    engine.dispose()
    return dict(totals)


def _ack(ack, totals, n) -> None:
    totals["sent"] += n
    totals["accepted"] += ack.accepted
    totals["duplicates"] += ack.duplicates
    totals["rejected"] += len(ack.rejections)


def score(url: str, start: datetime, end: datetime, env: dict | None = None) -> dict:
    from services.scorer.runs import Scorer
    from services.scorer.settings import ScorerSettings
    from services.scorer.sink import AnomalySink

    engine = create_db_engine(url, pool_size=2)
    settings = ScorerSettings.from_env({"DATABASE_URL": url, **(env or {})})
    scorer = Scorer(engine, settings, AnomalySink("off"))
    result = scorer.run("default", start, end, trigger="on_demand")
    engine.dispose()
    if result.status != "succeeded":
        raise RuntimeError(f"scoring failed: {result.error}")
    return result.figures


def positives(labels) -> dict[tuple[str, date], set[str]]:
    out: dict[tuple[str, date], set[str]] = defaultdict(set)
    for label in labels:
        d = label.start.astimezone(timezone.utc).date()
        while d <= label.end.astimezone(timezone.utc).date():
            out[(label.user, d)].add(label.kind)
            d += timedelta(days=1)
    return out


def load_user_days(url: str, first_day: date) -> tuple[list[tuple[str, date]], np.ndarray, np.ndarray]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT user_name, day, score, learning FROM user_scores WHERE tenant = 'default' AND day >= %s",
            (first_day,),
        ).fetchall()
    keys = [(r[0], r[1]) for r in rows]
    return keys, np.array([float(r[2]) for r in rows]), np.array([bool(r[3]) for r in rows])


def isolation_forest_scores(url: str, keys: list[tuple[str, date]]) -> np.ndarray:
    """An IsolationForest over the same hourly features, summed per user-day (and the hourly maximum)."""
    from services.scorer.baseline import COLUMNS

    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        rows = conn.execute(
            "SELECT user_name, hour::date, model, features FROM user_hour_features WHERE tenant = 'default'"
        ).fetchall()
    index = {c: i for i, c in enumerate(COLUMNS)}
    sums: dict[tuple[str, date], np.ndarray] = defaultdict(lambda: np.zeros(2 * len(COLUMNS)))
    for user, day, model, feats in rows:
        vec = sums[(user, day)]
        for name, value in feats.items():
            i = index.get((model, name))
            if i is not None:
                vec[i] += float(value)
                vec[len(COLUMNS) + i] = max(vec[len(COLUMNS) + i], float(value))
    X = np.log1p(np.array([sums[k] if k in sums else np.zeros(2 * len(COLUMNS)) for k in keys]))
    forest = IsolationForest(n_estimators=300, random_state=0).fit(X)
    return -forest.score_samples(X)


def clean_calibration(url: str, dirty_users: set[str], first_day: date) -> dict:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            """SELECT user_name, hour, max(score), count(*) FILTER (WHERE score >= 70), count(*)
               FROM event_scores WHERE tenant = 'default' AND NOT learning AND hour >= %s
               GROUP BY user_name, hour""",
            (datetime(first_day.year, first_day.month, first_day.day, tzinfo=timezone.utc),),
        ).fetchall()
    clean = [r for r in rows if r[0] not in dirty_users]
    hours = len(clean)
    hot_hours = sum(1 for r in clean if r[2] >= 70)
    model_scores = sum(r[4] for r in clean)
    hot_scores = sum(r[3] for r in clean)
    return {
        "clean_user_hours": hours,
        "user_hours_at_70": hot_hours,
        "share_user_hours_at_70": round(hot_hours / max(hours, 1), 5),
        "model_scores": model_scores,
        "share_model_scores_at_70": round(hot_scores / max(model_scores, 1), 5),
        "target_share_user_hours_at_70": 0.01,
    }


def metrics(keys, scores, learning, pos, kinds) -> dict:
    mask = ~learning
    keys = [k for k, m in zip(keys, mask) if m]
    scores = scores[mask]
    y = np.array([k in pos for k in keys])
    neg = ~y
    fpr = float((scores[neg] >= THRESHOLD).sum() / max(neg.sum(), 1))
    order = np.argsort(-scores, kind="stable")
    top20 = y[order[:20]]
    by_key = dict(zip(keys, scores))
    out = {
        "user_days": int(len(keys)),
        "positive_user_days": int(y.sum()),
        "fpr_at_70": round(fpr, 5),
        "precision_at_20": round(float(top20.mean()) if len(top20) else 0.0, 3),
        "roc_auc": round(float(roc_auc_score(y, scores)), 4) if 0 < y.sum() < len(y) else None,
        "kinds": {},
    }
    detected_total = labelled_total = 0
    for kind in kinds:
        kind_keys = [k for k, ks in pos.items() if kind in ks]
        got = np.array([by_key.get(k, 0.0) for k in kind_keys])
        detected = int((got >= THRESHOLD).sum())
        detected_total += detected
        labelled_total += len(kind_keys)
        kind_scores = np.concatenate([got, scores[neg]])
        kind_y = np.concatenate([np.ones(len(got), bool), np.zeros(int(neg.sum()), bool)])
        out["kinds"][kind] = {
            "user_days": len(kind_keys),
            "recall_at_70": round(detected / max(len(kind_keys), 1), 3),
            "roc_auc": round(float(roc_auc_score(kind_y, kind_scores)), 4) if len(got) else None,
            "median_score": round(float(np.median(got)), 1) if len(got) else None,
        }
    out["recall_at_70"] = round(detected_total / max(labelled_total, 1), 3)
    # Every kind counted once, so that one kind with many user-days (a spray) cannot carry the rest.
    kind_recalls = [k["recall_at_70"] for k in out["kinds"].values() if k["user_days"]]
    out["recall_at_70_macro"] = round(float(np.mean(kind_recalls)), 3) if kind_recalls else 0.0
    return out


def at_equal_fpr(keys, scores, learning, pos, target_fpr: float) -> dict:
    """Recall of another scorer when its threshold gives the same user-day FPR."""
    mask = ~learning
    keys = [k for k, m in zip(keys, mask) if m]
    scores = scores[mask]
    y = np.array([k in pos for k in keys])
    neg_scores = np.sort(scores[~y])
    allowed = int(np.floor(target_fpr * len(neg_scores)))
    threshold = neg_scores[len(neg_scores) - allowed - 1] if allowed < len(neg_scores) else -np.inf
    flagged = scores > threshold
    return {
        "fpr": round(float(flagged[~y].mean()), 5),
        "recall": round(float(flagged[y].mean()), 3),
        "roc_auc": round(float(roc_auc_score(y, scores)), 4) if 0 < y.sum() < len(y) else None,
    }


def evaluate(url: str, sim, first_day: date, kinds) -> dict:
    pos = positives(sim.labels)
    keys, scores, learning = load_user_days(url, first_day)
    # Labelled user-days without any activity the scorer saw count as missed (score 0).
    present = set(keys)
    for k in pos:
        if k not in present and k[1] >= first_day:
            keys.append(k)
            scores = np.append(scores, 0.0)
            learning = np.append(learning, False)
    model = metrics(keys, scores, learning, pos, kinds)
    forest = isolation_forest_scores(url, keys)
    model_at = at_equal_fpr(keys, scores, learning, pos, model["fpr_at_70"])
    forest_at = at_equal_fpr(keys, forest, learning, pos, model["fpr_at_70"])
    dirty = {label.user for label in sim.labels}
    return {
        "model": model,
        "model_at_its_fpr": model_at,
        "isolation_forest_at_equal_fpr": forest_at,
        "calibration": clean_calibration(url, dirty, first_day),
    }


def print_table(result: dict) -> None:
    m = result["model"]
    print(f"\nuser-days scored (past learning): {m['user_days']}, labelled: {m['positive_user_days']}")
    print(f"{'scenario':22} {'user-days':>9} {'recall@70':>10} {'ROC AUC':>8} {'median':>7}")
    for kind, k in m["kinds"].items():
        print(f"{kind:22} {k['user_days']:9d} {k['recall_at_70']:10.3f} {k['roc_auc'] or 0:8.4f} {k['median_score'] or 0:7.1f}")
    print(f"{'overall':22} {m['positive_user_days']:9d} {m['recall_at_70']:10.3f} {m['roc_auc'] or 0:8.4f}")
    print(f"{'mean over kinds':22} {'':9} {m['recall_at_70_macro']:10.3f}")
    print(f"user-day FPR at 70: {m['fpr_at_70']:.4f}   precision at 20: {m['precision_at_20']:.2f}")
    f = result["isolation_forest_at_equal_fpr"]
    print(f"IsolationForest at the same FPR ({f['fpr']:.4f}): recall {f['recall']:.3f}, ROC AUC {f['roc_auc']}")
    c = result["calibration"]
    print(f"calibration: {c['share_user_hours_at_70']:.4%} of clean user-hours reach 70 "
          f"({c['user_hours_at_70']}/{c['clean_user_hours']}); model scores: {c['share_model_scores_at_70']:.4%}")
    print("targets met:", result["targets_met"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detection")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--per-kind", type=int, default=4, help="scenarios of each kind")
    parser.add_argument("--keep", action="store_true", help="keep the evaluation database")
    args = parser.parse_args(argv)

    from ueba.simulator import LABEL_KINDS, SimulationConfig, simulate
    from ueba.store.migrate import upgrade

    started = time.time()
    config = SimulationConfig(users=args.users, days=args.days, seed=args.seed, scenarios_per_kind=args.per_kind)
    sim = simulate(config)
    with postgres_server(DATA / "eval") as server, scratch_database(server, "ueba_eval", keep=args.keep) as url:
        upgrade(url)
        t = time.time()
        ingested = ingest(url, sim)
        ingest_seconds = time.time() - t
        first = config.start + timedelta(days=config.first_scenario_day)
        end = config.start + timedelta(days=config.days)
        t = time.time()
        figures = score(url, first, end)
        score_seconds = time.time() - t
        result = evaluate(url, sim, first.date(), LABEL_KINDS)
    model, forest = result["model"], result["isolation_forest_at_equal_fpr"]
    targets = {
        "recall_at_70": ">= 0.9",
        "fpr_at_70": "<= 0.01",
        "better_than_isolation_forest": "recall at equal FPR",
        "clean_user_hours_at_70": "<= 0.01",
    }
    met = (
        model["recall_at_70"] >= 0.9
        and model["fpr_at_70"] <= 0.01
        and result["model_at_its_fpr"]["recall"] > forest["recall"]
        and result["calibration"]["share_user_hours_at_70"] <= 0.01
    )
    result.update({
        "config": {"users": args.users, "days": args.days, "seed": args.seed, "scenarios_per_kind": args.per_kind,
                   "scored_from": first.isoformat(), "scored_to": end.isoformat()},
        "ingest": {**ingested, "seconds": round(ingest_seconds, 1)},
        "scoring": {"seconds": round(score_seconds, 1), **{k: v for k, v in figures.items() if k != "snapshot"}},
        "targets": targets,
        "targets_met": bool(met),
        "seconds": round(time.time() - started, 1),
    })
    OUT.mkdir(exist_ok=True)
    (OUT / "detection.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    print(f"written to {OUT / 'detection.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
