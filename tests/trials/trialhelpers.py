"""Helpers shared by the trial tests (a uniquely named module: tests have no packages)."""

from __future__ import annotations

import copy
from typing import Any

from simulators.trials import TrialSpec, parse_spec

BASE: dict[str, Any] = {
    "name": "tiny",
    "seed": 11,
    "days": 1,
    "population": {"size": 40, "home_fraction": 0.0, "risk": {"sepsis": 40}},
    "design": {"kind": "paired", "control": "none"},
    "endpoints": {"condition": "sepsis"},
    "arms": [
        {"name": "none", "kind": "none"},
        {
            "name": "abx",
            "kind": "protocol",
            "condition": "sepsis",
            "delay_h": 1,
            "regimen": {"drug": "antibiotic", "count": 6, "every_h": 8},
        },
    ],
}

NEWS2_ARM: dict[str, Any] = {
    "name": "news2",
    "kind": "monitoring",
    "alert_policy": {
        "rules": [{"kind": "news2_band", "name": "news2_5", "threshold": 5, "pending_for_s": 300}]
    },
    "response_delay_min": 15,
    "regimen": {"drug": "antibiotic", "count": 6, "every_h": 8},
}


def spec_from(**changes: Any) -> TrialSpec:
    """The base spec with top-level fields replaced (deep-copied first)."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        data[key] = copy.deepcopy(value)
    return parse_spec(data)


def raw(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(changes))
    return data
