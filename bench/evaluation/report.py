"""The readable side of the results: a table per organisation and one across them."""

from __future__ import annotations

from collections import defaultdict
from statistics import mean
from typing import TextIO

from bench.evaluation.metrics import FPRS, TOP_K

HEADLINE = ("scenario_recall@0.5%", "scenario_recall@1%", "kinds_mean@0.5%", "kinds_mean@1%", f"precision@{TOP_K}",
            "roc_auc")


def headline(graded: dict) -> dict[str, float | None]:
    low, high = (graded["at_fpr"][str(f)] for f in FPRS)
    return {
        "scenario_recall@0.5%": low["scenario_recall"], "scenario_recall@1%": high["scenario_recall"],
        "kinds_mean@0.5%": low["scenario_recall_mean_over_kinds"], "kinds_mean@1%": high["scenario_recall_mean_over_kinds"],
        f"precision@{TOP_K}": graded[f"precision_at_{TOP_K}"], "roc_auc": graded["roc_auc"],
    }


def summary(runs: list[dict]) -> dict:
    """Per organisation size and detector: the mean and the worst of each headline figure over seeds."""
    cells: dict[tuple[int, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        size = run["organisation"]["users"]
        for name, graded in run["detectors"].items():
            for metric, value in headline(graded).items():
                if value is not None:
                    cells[(size, name)][metric].append(value)
    out: dict[str, dict] = {}
    for (size, name), metrics in sorted(cells.items()):
        out.setdefault(f"{size}_users", {})[name] = {
            metric: {"mean": round(mean(values), 3), "worst": round(min(values), 3), "runs": len(values)}
            for metric, values in metrics.items()
        }
    return out


def _fmt(value) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def print_run(run: dict, out: TextIO) -> None:
    org, det = run["organisation"], run["detectors"]
    product = det["product"]
    print(f"\nseed {org['seed']}, {org['users']} users x {org['days']} days from {org['start'][:10]}: "
          f"{product['user_days']:,} user-days graded, {product['attack_user_days']} under attack, "
          f"{org['attack_labels']} attacked accounts; {run['anomalies']:,} anomalies; "
          f"{sum(run['seconds'].values()):.0f} s {run['seconds']}", file=out)
    print(f"{'detector':18}" + "".join(f"{h:>21}" for h in HEADLINE), file=out)
    for name, graded in det.items():
        print(f"{name:18}" + "".join(f"{_fmt(v):>21}" for v in headline(graded).values()), file=out)
    names = list(det)
    print(f"recall by kind at 1% user-day FPR ({' / '.join(names)}):", file=out)
    at = {name: det[name]["at_fpr"][str(FPRS[-1])] for name in names}
    for kind, n in at["product"]["scenarios_by_kind"].items():
        print(f"  {kind:26} n={n:<3}" + "".join(f"{at[name]['recall_by_kind'][kind]:7.2f}" for name in names),
              file=out)
    print("look-alike user-days flagged at 1% FPR: "
          + "; ".join(f"{name} {at[name]['lookalikes_flagged']}" for name in names), file=out)
    risk = run["risk"]
    print(f"user risk levels {risk['levels']} (critical {risk['critical_share']:.1%} of users); attacked users "
          f"{risk['attacked_levels']}; above the median clean user ({risk['median_clean_risk']}): "
          f"{risk['attacked_above_median_clean']}/{risk['attacked_users']}", file=out)
    print(f"risk histogram {risk['histogram']}", file=out)
    seen = run.get("product_at_1pct")
    if seen:
        print(f"product's highest clean user-days (threshold at 1% FPR: {seen['threshold']}):", file=out)
        for row in seen["top_clean"][:5]:
            print(f"  {row['score']:6.1f} {row['user']} {row['day']} {','.join(row['lookalike'])} {row['strongest'][:90]}",
                  file=out)
        print(f"product's missed attacks at 1% FPR: {len(seen['missed'])}", file=out)
        for row in seen["missed"][:12]:
            print(f"  {row['kind']:24} {row['score']:6.1f} rank {row['rank']:<5} {row['label'][:80]}", file=out)


def print_summary(result: dict, out: TextIO) -> None:
    print(f"\nacross seeds (mean / worst); load {result['load_average']}", file=out)
    for size, detectors in result["summary"].items():
        print(f"{size}: " + "".join(f"{h:>21}" for h in HEADLINE), file=out)
        for name, metrics in detectors.items():
            cells = [f"{metrics[h]['mean']:.3f}/{metrics[h]['worst']:.3f}" if h in metrics else "-" for h in HEADLINE]
            print(f"  {name:18}" + "".join(f"{c:>21}" for c in cells), file=out)
