"""Simulator throughput: 1,000 users over 30 days, generated as ueba.v1.Event messages.

Throughput is measured on the process's CPU time as well as the wall clock, because the
machine's cores are shared and the wall clock then says more about the neighbours than about the
generator. Memory is the growth of the peak resident set while streaming (events are consumed
and dropped, as a file writer or the ingest client does).
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

USERS = int(os.environ.get("BENCH_SIMULATOR_USERS", "1000"))
DAYS = int(os.environ.get("BENCH_SIMULATOR_DAYS", "30"))
TARGETS = {"events_per_cpu_second_min": 100_000, "events_per_user_day_min": 50, "events_per_user_day_max": 150,
           "peak_rss_growth_mib_max": 400}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(out_dir: Path) -> dict:
    from ueba.simulator import SimulationConfig, simulate

    rss_before = _peak_rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    sim = simulate(SimulationConfig(users=USERS, days=DAYS, seed=7))
    plan_seconds = time.perf_counter() - wall
    count = 0
    for _ in sim.events():
        count += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per_cpu = count / cpu
    per_user_day = count / (USERS * DAYS)
    rss_growth = _peak_rss_mib() - rss_before
    result = {
        "users": USERS, "days": DAYS, "events": count, "labels": len(sim.labels),
        "plan_seconds": round(plan_seconds, 2), "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
        "events_per_cpu_second": round(per_cpu), "events_per_wall_second": round(count / wall),
        "events_per_user_day": round(per_user_day, 1), "peak_rss_growth_mib": round(rss_growth, 1),
        "targets": TARGETS,
    }
    result["targets_met"] = (per_cpu >= TARGETS["events_per_cpu_second_min"]
                             and TARGETS["events_per_user_day_min"] <= per_user_day <= TARGETS["events_per_user_day_max"]
                             and rss_growth <= TARGETS["peak_rss_growth_mib_max"])
    return result
