"""Time grids. Minutes after the scenario start are the simulator's clock.

Signals live on the minute grid (or a multiple of it); latent burdens on a 5-minute grid;
deliveries in milliseconds. ``NEVER`` is a grid step that never comes, so "not yet" needs no
separate flag in integer arrays.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

STEP_MIN = 5  # latent grid step, minutes
DT_H = STEP_MIN / 60
NEVER = 1 << 40


def step_minutes(steps: npt.NDArray[np.int64], horizon: int) -> npt.NDArray[np.float64]:
    """Grid steps to minutes; NEVER and anything at or past the horizon become NaN."""
    m = steps.astype(np.float64) * STEP_MIN
    return np.where((steps >= NEVER) | (m >= horizon), math.nan, m)
