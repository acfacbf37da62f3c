"""One table of the figures the capacity targets name, each beside its target, from the results
under bench-results/ (`make bench` writes it to bench-results/summary.json)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

GIB = 2**30
QUERY_METHODS = ("GetSummary", "ListAnomalies", "GetUser", "GetUserTimeline")


@dataclass(frozen=True)
class Row:
    path: str
    benchmark: str
    read: Callable[[dict], Any]  # the figure from the benchmark's JSON
    target: str
    met: Callable[[Any, dict], bool]  # (figure, every result) -> met
    unit: str = ""


def _largest_scorer_run(r: dict) -> dict:
    return max(r["runs"], key=lambda run: run["users"])


ROWS = (
    Row("ingest: protobuf batches through the ingest process, / raw COPY", "ingest",
        lambda r: r["ratio_to_raw_copy"], ">= 0.8", lambda v, _: v >= 0.8, "x"),
    Row("ueba ship of ECS JSON lines into ingest, / raw COPY", "ship",
        lambda r: r["ratio_to_raw_copy"], ">= 0.5", lambda v, _: v >= 0.5, "x"),
    Row("ueba ship --dry-run, every worker", "ship",
        lambda r: r["dry_run"]["all_workers_lines_per_second"], ">= ingest's events/s (not the bottleneck)",
        lambda v, all_: "ingest" in all_ and v >= all_["ingest"]["end_to_end"]["events_per_second"], " lines/s"),
    Row("rules: commit -> anomaly p95 while ingest streams", "profiles",
        lambda r: r["delay_seconds_p95"], "< 0.5", lambda v, _: v < 0.5, " s"),
    Row("scorer: 10,000 users x 24 h, one run", "scorer",
        lambda r: _largest_scorer_run(r)["seconds"], "< 20 (at 10,000 users)",
        lambda v, all_: _largest_scorer_run(all_["scorer"])["users"] >= 10_000 and v < 20, " s"),
    Row("scorer: peak memory of that run", "scorer",
        lambda r: round(_largest_scorer_run(r)["peak_rss_bytes"] / GIB, 2), "< 1 (at 10,000 users)",
        lambda v, all_: _largest_scorer_run(all_["scorer"])["users"] >= 10_000 and v < 1, " GiB"),
    *(Row(f"query p99 at 50 clients: {m}", "query", lambda r, m=m: r["paced_mixed"][m]["p99_ms"], "< 20",
          lambda v, _: v < 20, " ms") for m in QUERY_METHODS),
    Row("console: slowest page p99", "console",
        lambda r: max(p["p99_ms"] for p in r["pages"].values()), "< 300", lambda v, _: v < 300, " ms"),
    Row("delivery: p95 delay after the webhook recovers (30% failing)", "delivery",
        lambda r: r["delay_after_recovery_seconds"]["p95"], "all delivered",
        lambda _v, all_: all_["delivery"]["targets_met"], " s"),
)


def summarise(results_dir: Path) -> dict:
    results = {}
    for path in results_dir.glob("*.json"):
        if path.stem not in ("summary", "eval"):
            results[path.stem] = json.loads(path.read_text())
    rows = []
    for row in ROWS:
        result = results.get(row.benchmark)
        entry: dict[str, Any] = {"path": row.path, "benchmark": row.benchmark, "target": row.target, "unit": row.unit.strip()}
        if result is None:
            entry.update(figure=None, met=None, note="not run")
        else:
            try:
                figure = row.read(result)
                entry.update(figure=figure, met=bool(row.met(figure, results)),
                             load_average_1m=result.get("load_average_1m", result.get("load_average_1m_at_end")))
            except (KeyError, ValueError, TypeError) as exc:
                entry.update(figure=None, met=None, note=f"no figure in {row.benchmark}.json: {exc!r}")
        rows.append(entry)
    return {"rows": rows, "load_average_now": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def table(summary: dict) -> str:
    lines = [f"{'path':<62} {'figure':>14}  {'target':<42} met  load"]
    for r in summary["rows"]:
        figure = "-" if r["figure"] is None else f"{r['figure']:,}{(' ' + r['unit']) if r['unit'] else ''}"
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        lines.append(f"{r['path']:<62} {figure:>14}  {r['target']:<42} {met:<4} {r.get('load_average_1m') or r.get('note', '')}")
    lines.append(f"load average now {summary['load_average_now']} on {summary['cpus']} CPUs")
    return "\n".join(lines)
