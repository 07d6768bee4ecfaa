"""NEWS2 over numpy arrays: the same chart and rounding as ``twin.scores``, vectorised.

Used to label deterioration (NEWS2 in the high band) and as the NEWS2 baseline on whole
cohorts, where calling the scalar functions per bin would take minutes. A missing value (NaN)
scores 0, as a missing parameter contributes nothing in ``twin.scores.news2``.
``tests/models/test_news2.py`` checks every function against the twin's on random values.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]


def half_up(value: npt.ArrayLike, per_unit: int = 1) -> F:
    """Half-up rounding to 1/per_unit, snapped to 1e-6 first (``twin.scores._half_up``)."""
    return np.floor(np.round(np.asarray(value, dtype=np.float64) * per_unit, 6) + 0.5)


def _bands(x: F, edges: list[float], points: list[int], missing: npt.NDArray[np.bool_]) -> I8:
    """Points for the first edge that ``x <= edge`` (the last entry is for above every edge)."""
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), x, side="left")
    out = np.asarray(points, dtype=np.int8)[np.clip(idx, 0, len(points) - 1)]
    return np.where(missing, 0, out).astype(np.int8)


def respiratory_rate_points(rr: npt.ArrayLike) -> I8:
    r = half_up(rr)
    return _bands(np.nan_to_num(r), [8, 11, 20, 24], [3, 1, 0, 2, 3], np.isnan(r))


def pulse_points(hr: npt.ArrayLike) -> I8:
    p = half_up(hr)
    return _bands(np.nan_to_num(p), [40, 50, 90, 110, 130], [3, 1, 0, 1, 2, 3], np.isnan(p))


def systolic_bp_points(sbp: npt.ArrayLike) -> I8:
    s = half_up(sbp)
    return _bands(np.nan_to_num(s), [90, 100, 110, 219], [3, 2, 1, 0, 3], np.isnan(s))


def temperature_points(temp: npt.ArrayLike) -> I8:
    t = half_up(temp, 10)
    return _bands(np.nan_to_num(t), [350, 360, 380, 390], [3, 1, 0, 1, 2], np.isnan(t))


def spo2_points(spo2: npt.ArrayLike, on_oxygen: npt.ArrayLike, scale2: npt.ArrayLike) -> I8:
    s = half_up(spo2)
    miss = np.isnan(s)
    s = np.nan_to_num(s)
    one = _bands(s, [91, 93, 95], [3, 2, 1, 0], miss)
    low = _bands(s, [83, 85, 87], [3, 2, 1, 0], miss)
    high = _bands(s, [92, 94, 96], [0, 1, 2, 3], miss)
    on = np.asarray(on_oxygen, dtype=bool)
    two = np.where(s <= 87, low, np.where(on, high, 0))
    return np.where(np.asarray(scale2, dtype=bool), two, one).astype(np.int8)


def news2_total(
    *,
    respiratory_rate: npt.ArrayLike,
    spo2: npt.ArrayLike,
    systolic_bp: npt.ArrayLike,
    pulse: npt.ArrayLike,
    temperature: npt.ArrayLike,
    on_oxygen: npt.ArrayLike,
    not_alert: npt.ArrayLike,
    scale2: npt.ArrayLike,
) -> npt.NDArray[np.int16]:
    """NEWS2 totals, elementwise (broadcasting); NaN vitals score 0 as if not given."""
    on = np.asarray(on_oxygen, dtype=bool)
    total = (
        respiratory_rate_points(respiratory_rate).astype(np.int16)
        + spo2_points(spo2, on, scale2)
        + np.where(on, 2, 0)
        + systolic_bp_points(systolic_bp)
        + pulse_points(pulse)
        + np.where(np.asarray(not_alert, dtype=bool), 3, 0)
        + temperature_points(temperature)
    )
    return total.astype(np.int16)
