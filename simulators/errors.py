"""Errors raised by the simulator.

Exception tree::

    SimulatorError
    ├── ConfigError     a configuration, schedule or shard that cannot be simulated
    └── PolicyError     a policy asked for something the simulator cannot do (an intervention
                        before the decision time, an unknown drug, a negative dose)

Everything the simulator raises on purpose derives from ``SimulatorError``; a bug shows up as
anything else.
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base of every error the simulator raises."""


class ConfigError(SimulatorError):
    """The configuration, a schedule or a shard specification cannot be simulated."""


class PolicyError(SimulatorError):
    """A policy returned an intervention the simulator cannot apply."""
