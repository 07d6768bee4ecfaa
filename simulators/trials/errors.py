"""Errors raised by virtual trials.

Exception tree (under the simulator's own base)::

    SimulatorError
    └── TrialError        anything a trial refuses to do
        ├── SpecError     the trial specification is invalid (says where and why)
        └── ResumeError   an output directory holds another trial's results
"""

from __future__ import annotations

from simulators.errors import SimulatorError


class TrialError(SimulatorError):
    """Base of every error a virtual trial raises on purpose."""


class SpecError(TrialError):
    """The trial specification is invalid; the message lists every problem and where it is."""


class ResumeError(TrialError):
    """The output directory belongs to a different trial specification."""
