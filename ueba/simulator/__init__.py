"""Activity simulator: an organisation's users over a period, with injected labelled scenarios.

    from ueba.simulator import SimulationConfig, simulate
    sim = simulate(SimulationConfig(users=200, days=30, seed=7))
    for event in sim.events(): ...      # ueba.v1.Event, in time order, deterministic per seed
    sim.labels                           # list[Label]: what was injected, who, when
"""

from ueba.simulator.labels import ATTACK_KINDS, BENIGN_KINDS, LABEL_KINDS, Label, read_labels, write_labels
from ueba.simulator.org import SimUser
from ueba.simulator.simulation import Simulation, SimulationConfig, simulate, start_date
from ueba.simulator.world import EXFIL_APPS, RISKY_COUNTRIES

__all__ = [
    "ATTACK_KINDS", "BENIGN_KINDS", "EXFIL_APPS", "LABEL_KINDS", "RISKY_COUNTRIES", "Label", "SimUser", "Simulation", "SimulationConfig",
    "read_labels", "simulate", "start_date", "write_labels",
]
