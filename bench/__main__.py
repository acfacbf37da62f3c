"""Runs every benchmark module bench/bench_*.py and writes its JSON result.

Each module has `run(out_dir: Path) -> dict`; the result goes to
bench-results/<name>.json. `python -m bench ingest` runs only bench_ingest. Then one table of
every targeted figure (bench/summary.py), printed and written to bench-results/summary.json.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

import bench
from bench.summary import summarise, table

OUT = Path(__file__).resolve().parent.parent / "bench-results"


def main(argv: list[str]) -> int:
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    chosen = [n for n in names if not argv or n in argv]
    if not chosen:
        print(f"no benchmark matches {argv}; have {names}", file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    failed = []
    for name in chosen:
        print(f"== bench {name}", flush=True)
        started = time.time()
        result = importlib.import_module(f"bench.bench_{name}").run(OUT)
        result.setdefault("benchmark", name)
        result.setdefault("seconds", round(time.time() - started, 1))
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(json.dumps(result, indent=2, default=str))
        if result.get("targets_met") is False:
            failed.append(name)
    if failed:
        print(f"targets missed: {failed}", file=sys.stderr)
    summary = summarise(OUT)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
