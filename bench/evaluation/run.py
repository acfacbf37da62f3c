"""One evaluated organisation: simulate, run the product end to end, grade it and its peers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ueba.store.databases import scratch_database
from bench.evaluation.features import DayFeatures
from bench.evaluation.metrics import explain, grade, risk_distribution
from bench.evaluation.peers import peer_scores
from bench.evaluation.system import read_back, run_scoring, running_services, ship, wait_for_profiles
from bench.evaluation.truth import Truth
from ueba.simulator import ATTACK_KINDS, BENIGN_KINDS, SimulationConfig, simulate
from ueba.store.migrate import upgrade


@dataclass(frozen=True)
class Organisation:
    seed: int
    users: int
    days: int
    start: datetime
    attacks_per_kind: int
    lookalikes_per_kind: int

    def config(self) -> SimulationConfig:
        counts = {kind: self.attacks_per_kind for kind in ATTACK_KINDS}
        counts.update({kind: self.lookalikes_per_kind for kind in BENIGN_KINDS})
        return SimulationConfig(users=self.users, days=self.days, seed=self.seed, start=self.start,
                                scenario_counts=counts)


def evaluate(server_url: str, org: Organisation, log_dir: Path, keep: bool = False) -> dict:
    config = org.config()
    sim = simulate(config)
    features = DayFeatures()
    first = config.start + timedelta(days=config.first_scenario_day)
    end = config.start + timedelta(days=config.days)
    seconds: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        seconds[name] = round(now - clock, 1)
        clock = now

    with scratch_database(server_url, "ueba_eval", keep=keep) as url:
        upgrade(url)
        with running_services(url, log_dir) as services:
            lap("start")
            shipped = ship(services["ingest"].address, features.observe(sim.events()))
            lap("ship")
            wait_for_profiles(url)
            lap("profiles")
            scoring = run_scoring(services["scorer"].address, first, end)
            lap("scoring")
            readout = read_back(services["query"].address, first, end)
            lap("readout")

    truth = Truth.from_labels(sim.labels)
    # Graded: every user-day with activity from the first day attacks can happen on.
    keys = [k for k in features.keys() if first.date() <= k[1] < end.date()]
    detectors = {"product": readout.product_scores(), "max_of_scales": readout.max_of_scales(),
                 **peer_scores(features, keys)}
    graded = {name: grade(scores, keys, truth) for name, scores in detectors.items()}
    lap("grading")
    return {
        "organisation": {"seed": org.seed, "users": org.users, "days": org.days, "start": org.start.isoformat(),
                         "graded_from": first.date().isoformat(), "attacks_per_kind": org.attacks_per_kind,
                         "lookalikes_per_kind": org.lookalikes_per_kind,
                         "labels": len(sim.labels), "attack_labels": len(truth.attacks)},
        "ingest": shipped,
        "scoring": scoring,
        "anomalies": readout.anomalies,
        "detectors": graded,
        "risk": risk_distribution(readout.risks, truth),
        "product_at_1pct": explain(detectors["product"], keys, truth, readout.strongest),
        "seconds": seconds,
    }
