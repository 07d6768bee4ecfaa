"""Shared fixtures for the simulator tests: small cohorts, simulated once per session."""

from __future__ import annotations

import pytest

from simulators import ChunkResult, SimulationConfig, simulate


def run(config: SimulationConfig, **kwargs: object) -> list[ChunkResult]:
    return list(simulate(config, **kwargs))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def small() -> list[ChunkResult]:
    """24 mixed patients, one day, default rates."""
    return run(SimulationConfig(patients=24, days=1, seed=7))


@pytest.fixture(scope="session")
def septic() -> list[ChunkResult]:
    """A ward cohort enriched for sepsis (about half develop it within 3 days)."""
    cfg = SimulationConfig(patients=160, days=3, seed=11, home_fraction=0.0, risk={"sepsis": 40.0})
    return run(cfg)
