"""`make eval`: detection quality end to end on labelled simulated organisations, beside generic peers.

    python -m bench.evaluation                                   # seeds 4242-4244 at 200 and 500 users
    python -m bench.evaluation --seeds 4242 --users 200          # the quick subset (EVAL_ARGS)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.databases import DATA, postgres_server
from bench.evaluation.report import print_run, print_summary, summary
from bench.evaluation.run import Organisation, evaluate

ROOT = Path(__file__).resolve().parent.parent.parent
SEEDS = "4242,4243,4244"  # seeds no test uses


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def _day(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=timezone.utc)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date: {text!r}") from exc


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.evaluation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=_ints, default=_ints(SEEDS), help=f"comma-separated seeds (default {SEEDS})")
    p.add_argument("--users", type=_ints, default=[200, 500], help="comma-separated organisation sizes (default 200,500)")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--start", type=_day, default=None,
                   help="first simulated day (ISO date); default: the period ends at today's UTC midnight, as "
                        "`make run`'s does, so that risk (a window ending now) covers it. Pin it to rerun the "
                        "same data on a later day (within a week: attacks start on day 7)")
    p.add_argument("--attacks-per-kind", type=int, default=None, help="default: max(2, users / 100)")
    p.add_argument("--lookalikes-per-kind", type=int, default=None, help="default: max(3, users / 50)")
    p.add_argument("--output", type=Path, default=ROOT / "bench-results" / "eval.json")
    p.add_argument("--keep", action="store_true", help="keep each evaluation database")
    args = p.parse_args(argv)
    if args.days < 10:
        p.error("--days: at least 10 (a baseline week, then attacks)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = args.start or today - timedelta(days=args.days)
    started = time.monotonic()
    runs = []
    with postgres_server(DATA / "eval") as server:
        for users in args.users:
            for seed in args.seeds:
                org = Organisation(seed, users, args.days, start,
                                   args.attacks_per_kind if args.attacks_per_kind is not None else max(2, users // 100),
                                   args.lookalikes_per_kind if args.lookalikes_per_kind is not None
                                   else max(3, users // 50))
                run = evaluate(server, org, DATA / "eval-logs" / f"{users}-{seed}", keep=args.keep)
                run["load_average"] = Path("/proc/loadavg").read_text().split()[:3]
                runs.append(run)
                print_run(run, sys.stdout)
                sys.stdout.flush()
    result = {"runs": runs, "summary": summary(runs), "seconds": round(time.monotonic() - started, 1),
              "load_average": Path("/proc/loadavg").read_text().split()[:3]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result, sys.stdout)
    print(f"written to {args.output} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
