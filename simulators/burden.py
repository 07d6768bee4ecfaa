"""From episode burdens to per-patient quantities: signal offsets, interpolated to any time.

Episodes live on the 5-minute latent grid; signals need offsets per patient on the minute
grid (or at a cuff reading's minute). Offsets of a patient's episodes add up.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from simulators.conditions import EFFECTS, Effect, Episodes
from simulators.grid import STEP_MIN
from simulators.physiology import Latent

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class Burdens:
    """Per-patient offsets for one chunk: ``cols`` are the chunk rows with any started episode."""

    def __init__(self, latent: Latent, episodes: Episodes) -> None:
        keep = np.nonzero(latent.started)[0]
        self._b = np.ascontiguousarray(latent.burden[:, keep].T)  # (started episodes, grid)
        self._row = episodes.row[keep]
        self._effect_row = episodes.effect_row()[keep]
        self._condition = episodes.condition[keep]
        self.cols = np.unique(self._row)  # chunk rows with an episode
        self._col_of = np.searchsorted(self.cols, self._row)
        self.episode_index = keep

    @property
    def rows(self) -> I64:
        """Chunk row of each started episode (aligned with ``episode_index``)."""
        return self._row

    @property
    def any(self) -> bool:
        return bool(self.cols.size)

    def grid(self, effect: Effect, power: float = 1.0) -> F32:
        """(len(cols), grid points): sum over each patient's episodes of coef * b**power."""
        coef = EFFECTS[self._effect_row, effect].astype(np.float32)
        out = np.zeros((self.cols.size, self._b.shape[1]), np.float32)
        for e in np.nonzero(coef)[0]:
            b = self._b[e] if power == 1.0 else self._b[e] ** np.float32(power)
            out[self._col_of[e]] += coef[e] * b
        return out

    def grid_of(self, condition_code: int) -> F32:
        """(len(cols), grid points): summed burden of one condition's episodes."""
        out = np.zeros((self.cols.size, self._b.shape[1]), np.float32)
        for e in np.nonzero(self._condition == condition_code)[0]:
            out[self._col_of[e]] += self._b[e]
        return out

    def confusion(self, minutes: I64, cols: I64) -> npt.NDArray[np.int8]:
        """ACVPU level (0 Alert .. 3 Pain) at ``minutes`` for chunk rows ``cols`` (same shape)."""
        level = np.zeros(minutes.shape, np.int8)
        for e in range(self._row.size):
            on = self.cols[self._col_of[e]]
            sel = cols == on
            if not sel.any():
                continue
            b = at_minutes(self._b[e : e + 1], minutes[sel], np.zeros(sel.sum(), np.int64))
            thr = EFFECTS[self._effect_row[e], Effect.CONFUSION]
            lv = (b >= thr).astype(np.int8) + (b >= thr + 0.3) + (b >= thr + 0.5)
            level[sel] = np.maximum(level[sel], lv)
        return level


def to_minutes(grid: F32, minutes: int) -> F32:
    """Linear interpolation of (k, grid points) on the 5-minute grid to (k, minutes)."""
    n_grid = grid.shape[1] - 1
    w = np.arange(STEP_MIN, dtype=np.float32) / STEP_MIN
    lo, hi = grid[:, :-1, None], grid[:, 1:, None]
    out = lo + (hi - lo) * w
    return np.ascontiguousarray(out.reshape(grid.shape[0], n_grid * STEP_MIN)[:, :minutes])


def at_minutes(grid: F32, minutes: I64, rows: I64) -> F64:
    """Interpolate row ``rows[i]`` of a (k, grid points) 5-minute grid at ``minutes[i]``."""
    j = np.minimum(minutes // STEP_MIN, grid.shape[1] - 2)
    w = (minutes - j * STEP_MIN) / STEP_MIN
    lo = grid[rows, j].astype(np.float64)
    hi = grid[rows, j + 1].astype(np.float64)
    return np.asarray(lo + (hi - lo) * w)


def member(sorted_keys: I64, values: I64) -> tuple[I64, npt.NDArray[np.bool_]]:
    """Position of each value in ``sorted_keys`` and whether it is there at all."""
    if sorted_keys.size == 0:
        return np.zeros(values.shape, np.int64), np.zeros(values.shape, bool)
    where = np.searchsorted(sorted_keys, values)
    found = sorted_keys[np.minimum(where, sorted_keys.size - 1)] == values
    return np.minimum(where, sorted_keys.size - 1), found
