"""Shared small simulations: generated once per test session, they keep the tests fast."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ueba.simulator import SimulationConfig, simulate

START = datetime(2026, 10, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def attacked():
    """60 users over three weeks with every scenario kind injected once (spray: once, many users)."""
    sim = simulate(SimulationConfig(users=60, days=21, seed=11, start=START))
    return sim, list(sim.events())


@pytest.fixture(scope="session")
def clean():
    """A clean organisation with many travellers, for the false-positive style checks."""
    sim = simulate(SimulationConfig(users=80, days=28, seed=5, start=START, scenarios=False, traveller_share=0.5))
    return sim, list(sim.events())
