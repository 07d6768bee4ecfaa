"""NEWS2 over numpy arrays: the same chart and rounding as ``twin.scores``, vectorised.

Used to label deterioration (NEWS2 in the high band) and as the NEWS2 baseline on whole
cohorts, where calling the scalar functions per bin would take minutes. A missing value (NaN)
scores 0, as a missing parameter contributes nothing in ``twin.scores.news2``.
``tests/models/test_news2.py`` checks every function against the twin's on random values.

Each chart is one ``searchsorted`` over its band edges and one table lookup: the fast path
scores some twenty small arrays per forecast batch, where a handful of numpy calls per vital
(``nan_to_num``, ``clip``, ``where``) cost more than the arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]


def half_up(value: npt.ArrayLike, per_unit: int = 1) -> F:
    """Half-up rounding to 1/per_unit, snapped to 1e-6 first (``twin.scores._half_up``)."""
    x = np.asarray(value, dtype=np.float64)
    if per_unit != 1:  # x * 1 is x, bit for bit: skip the pass
        x = x * per_unit
    return np.floor(x.round(6) + 0.5)


class _Chart:
    """One parameter's bands: the points for the first edge ``x <= edge``, the last entry for
    above every edge, and 0 for a missing value.

    The edges end with +inf and the table with an extra 0: ``searchsorted`` sorts NaN after
    +inf, so a missing value lands on that 0 and an infinite one on the top band, with no
    separate NaN mask.
    """

    def __init__(self, edges: list[float], points: list[int]) -> None:
        assert len(points) == len(edges) + 1
        self.edges = np.array([*edges, np.inf], dtype=np.float64)
        self.points = np.array([*points, 0], dtype=np.int8)
        self.edges.flags.writeable = self.points.flags.writeable = False

    def __call__(self, rounded: F) -> I8:
        # asarray: a 0-d input gives a 0-d array, not a numpy scalar
        return np.asarray(self.points[self.edges.searchsorted(rounded)])


_RESPIRATORY_RATE = _Chart([8, 11, 20, 24], [3, 1, 0, 2, 3])
_PULSE = _Chart([40, 50, 90, 110, 130], [3, 1, 0, 1, 2, 3])
_SYSTOLIC_BP = _Chart([90, 100, 110, 219], [3, 2, 1, 0, 3])
_TEMPERATURE = _Chart([350, 360, 380, 390], [3, 1, 0, 1, 2])
# SpO2: every edge of both scales, and one row of points per case: scale 1; scale 2 off
# oxygen (above 87 % scores 0); scale 2 on oxygen (above 92 % scores again).
_SPO2_EDGES = np.array([83, 85, 87, 91, 92, 93, 94, 95, 96, np.inf], dtype=np.float64)
_SPO2_POINTS = np.array(
    [
        # <=83 85 87 91 92 93 94 95 96 >96 NaN
        [3, 3, 3, 3, 2, 2, 1, 1, 0, 0, 0],  # scale 1
        [3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0],  # scale 2, air
        [3, 2, 1, 0, 0, 1, 1, 2, 2, 3, 0],  # scale 2, oxygen
    ],
    dtype=np.int8,
)
_SPO2_EDGES.flags.writeable = _SPO2_POINTS.flags.writeable = False


def respiratory_rate_points(rr: npt.ArrayLike) -> I8:
    return _RESPIRATORY_RATE(half_up(rr))


def pulse_points(hr: npt.ArrayLike) -> I8:
    return _PULSE(half_up(hr))


def systolic_bp_points(sbp: npt.ArrayLike) -> I8:
    return _SYSTOLIC_BP(half_up(sbp))


def temperature_points(temp: npt.ArrayLike) -> I8:
    return _TEMPERATURE(half_up(temp, 10))


def spo2_points(spo2: npt.ArrayLike, on_oxygen: npt.ArrayLike, scale2: npt.ArrayLike) -> I8:
    band = _SPO2_EDGES.searchsorted(half_up(spo2))
    on = np.asarray(on_oxygen, dtype=bool)
    case = np.asarray(scale2, dtype=bool) * (1 + on)  # 0, 1 or 2: the row of _SPO2_POINTS
    return np.asarray(_SPO2_POINTS[case, band])


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
        + on * np.int16(2)
        + systolic_bp_points(systolic_bp)
        + pulse_points(pulse)
        + np.asarray(not_alert, dtype=bool) * np.int16(3)
        + temperature_points(temperature)
    )
    return total.astype(np.int16)


# The window channels NEWS2 scores (heart rate is the chart's pulse)
VITALS = ("heart_rate", "respiratory_rate", "spo2", "temperature", "systolic_bp")


def news2_of(
    vitals: Mapping[str, npt.ArrayLike],
    *,
    on_oxygen: npt.ArrayLike,
    not_alert: npt.ArrayLike,
    scale2: npt.ArrayLike,
) -> npt.NDArray[np.int16]:
    """``news2_total`` of vitals keyed by their window channel names (``VITALS``)."""
    return news2_total(
        respiratory_rate=vitals["respiratory_rate"],
        spo2=vitals["spo2"],
        systolic_bp=vitals["systolic_bp"],
        pulse=vitals["heart_rate"],
        temperature=vitals["temperature"],
        on_oxygen=on_oxygen,
        not_alert=not_alert,
        scale2=scale2,
    )
