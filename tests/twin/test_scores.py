"""NEWS2 and qSOFA against the RCP 2017 chart and Sepsis-3 (shared/reference/clinical.md).

Every expected value below is copied from the chart by hand, never computed from the code.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin.scores import (
    NEWS2_PARAMETERS,
    Band,
    News2,
    air_or_oxygen_points,
    band_for,
    consciousness_points,
    news2,
    pulse_points,
    qsofa,
    respiratory_rate_points,
    spo2_points,
    systolic_bp_points,
    temperature_points,
)
from twin.signals import Acvpu

# --- per-parameter band edges, both sides of every edge -------------------------------------

RR_CHART = [
    (0, 3),
    (8, 3),
    (9, 1),
    (11, 1),
    (12, 0),
    (20, 0),
    (21, 2),
    (24, 2),
    (25, 3),
    (60, 3),
]


@pytest.mark.parametrize(("rr", "expected"), RR_CHART)
def test_respiratory_rate_edges(rr: float, expected: int) -> None:
    assert respiratory_rate_points(rr) == expected


SPO2_SCALE_1_CHART = [
    (70, 3),
    (91, 3),
    (92, 2),
    (93, 2),
    (94, 1),
    (95, 1),
    (96, 0),
    (100, 0),
]


@pytest.mark.parametrize(("spo2", "expected"), SPO2_SCALE_1_CHART)
@pytest.mark.parametrize("on_oxygen", [False, True])
def test_spo2_scale_1_edges_ignore_oxygen(spo2: float, on_oxygen: bool, expected: int) -> None:
    assert spo2_points(spo2, on_oxygen=on_oxygen, scale=1) == expected
    assert spo2_points(spo2, on_oxygen=on_oxygen) == expected  # scale 1 is the default


SPO2_SCALE_2_AIR_CHART = [
    (70, 3),
    (83, 3),
    (84, 2),
    (85, 2),
    (86, 1),
    (87, 1),
    (88, 0),
    (92, 0),
    (93, 0),
    (94, 0),
    (95, 0),
    (96, 0),
    (97, 0),
    (100, 0),
]


@pytest.mark.parametrize(("spo2", "expected"), SPO2_SCALE_2_AIR_CHART)
def test_spo2_scale_2_on_air_edges(spo2: float, expected: int) -> None:
    assert spo2_points(spo2, on_oxygen=False, scale=2) == expected


SPO2_SCALE_2_OXYGEN_CHART = [
    (70, 3),
    (83, 3),
    (84, 2),
    (85, 2),
    (86, 1),
    (87, 1),
    (88, 0),
    (92, 0),
    (93, 1),
    (94, 1),
    (95, 2),
    (96, 2),
    (97, 3),
    (100, 3),
]


@pytest.mark.parametrize(("spo2", "expected"), SPO2_SCALE_2_OXYGEN_CHART)
def test_spo2_scale_2_on_oxygen_edges(spo2: float, expected: int) -> None:
    assert spo2_points(spo2, on_oxygen=True, scale=2) == expected


def test_air_or_oxygen() -> None:
    assert air_or_oxygen_points(True) == 2
    assert air_or_oxygen_points(False) == 0


SBP_CHART = [
    (50, 3),
    (90, 3),
    (91, 2),
    (100, 2),
    (101, 1),
    (110, 1),
    (111, 0),
    (219, 0),
    (220, 3),
    (280, 3),
]


@pytest.mark.parametrize(("sbp", "expected"), SBP_CHART)
def test_systolic_bp_edges(sbp: float, expected: int) -> None:
    assert systolic_bp_points(sbp) == expected


PULSE_CHART = [
    (25, 3),
    (40, 3),
    (41, 1),
    (50, 1),
    (51, 0),
    (90, 0),
    (91, 1),
    (110, 1),
    (111, 2),
    (130, 2),
    (131, 3),
    (220, 3),
]


@pytest.mark.parametrize(("pulse", "expected"), PULSE_CHART)
def test_pulse_edges(pulse: float, expected: int) -> None:
    assert pulse_points(pulse) == expected


TEMPERATURE_CHART = [
    (30.0, 3),
    (35.0, 3),
    (35.1, 1),
    (36.0, 1),
    (36.1, 0),
    (38.0, 0),
    (38.1, 1),
    (39.0, 1),
    (39.1, 2),
    (42.0, 2),
]


@pytest.mark.parametrize(("temp", "expected"), TEMPERATURE_CHART)
def test_temperature_edges(temp: float, expected: int) -> None:
    assert temperature_points(temp) == expected


CONSCIOUSNESS_CHART: list[tuple[str | int, int]] = [
    ("A", 0),
    ("C", 3),
    ("V", 3),
    ("P", 3),
    ("U", 3),
    (0, 0),
    (1, 3),
    (2, 3),
    (3, 3),
    (4, 3),
    (Acvpu.ALERT, 0),
    (Acvpu.CONFUSION, 3),
    (Acvpu.UNRESPONSIVE, 3),
]


@pytest.mark.parametrize(("level", "expected"), CONSCIOUSNESS_CHART)
def test_consciousness(level: str | int, expected: int) -> None:
    assert consciousness_points(level) == expected


# --- rounding rule: half up to the chart's resolution ---------------------------------------

ROUNDING_CASES = [
    (respiratory_rate_points, 20.4, 0),  # -> 20
    (respiratory_rate_points, 20.5, 2),  # -> 21
    (respiratory_rate_points, 11.5, 0),  # -> 12
    (respiratory_rate_points, 11.49, 1),  # -> 11
    (respiratory_rate_points, 8.5, 1),  # -> 9
    (respiratory_rate_points, 24.5, 3),  # -> 25
    (systolic_bp_points, 90.5, 2),  # -> 91
    (systolic_bp_points, 90.4, 3),  # -> 90
    (systolic_bp_points, 219.5, 3),  # -> 220
    (systolic_bp_points, 219.4, 0),  # -> 219
    (pulse_points, 90.5, 1),  # -> 91
    (pulse_points, 90.49, 0),  # -> 90
    (pulse_points, 130.5, 3),  # -> 131
    (temperature_points, 38.04, 0),  # -> 38.0
    (temperature_points, 38.05, 1),  # -> 38.1
    (temperature_points, 35.05, 1),  # -> 35.1
    (temperature_points, 35.04, 3),  # -> 35.0
    (temperature_points, 36.05, 0),  # -> 36.1
    (temperature_points, 39.05, 2),  # -> 39.1
    (temperature_points, 39.04, 1),  # -> 39.0
    (temperature_points, 38.0499, 0),  # -> 38.0, just below the half
]


@pytest.mark.parametrize(("fn", "value", "expected"), ROUNDING_CASES)
def test_rounding_half_up(fn: object, value: float, expected: int) -> None:
    assert callable(fn)
    assert fn(value) == expected


def test_rounding_is_half_up_not_bankers() -> None:
    # Banker's rounding would send 20.5 to 20 (0 points) and 21.5 to 22 (2 points).
    assert respiratory_rate_points(20.5) == 2
    assert respiratory_rate_points(21.5) == 2
    assert pulse_points(50.5) == 0  # -> 51; banker's -> 50 -> 1 point


def test_rounding_absorbs_float_error_at_the_half() -> None:
    # A converted value that lands a hair below the half still rounds up, as charted.
    assert temperature_points(38.05 - 1e-12) == 1
    assert respiratory_rate_points(20.5 - 1e-12) == 2
    # ...but a real difference below the half does not.
    assert temperature_points(38.0499) == 0
    assert respiratory_rate_points(20.499) == 0


@pytest.mark.parametrize(
    ("spo2", "on_oxygen", "expected"),
    [
        (92.5, True, 1),  # -> 93 on O2
        (92.4, True, 0),  # -> 92
        (83.5, False, 2),  # -> 84
        (96.5, True, 3),  # -> 97 on O2
    ],
)
def test_spo2_scale_2_rounding(spo2: float, on_oxygen: bool, expected: int) -> None:
    assert spo2_points(spo2, on_oxygen=on_oxygen, scale=2) == expected


def test_spo2_scale_1_rounding() -> None:
    assert spo2_points(95.5, on_oxygen=False) == 0  # -> 96
    assert spo2_points(95.4, on_oxygen=False) == 1  # -> 95
    assert spo2_points(91.5, on_oxygen=False) == 2  # -> 92


# --- bands ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "any_single_3", "expected"),
    [
        (0, False, Band.ROUTINE),
        (1, False, Band.LOW),
        (4, False, Band.LOW),
        (3, True, Band.LOW_MEDIUM),
        (4, True, Band.LOW_MEDIUM),
        (5, False, Band.MEDIUM),
        (6, False, Band.MEDIUM),
        (5, True, Band.MEDIUM),
        (6, True, Band.MEDIUM),
        (7, False, Band.HIGH),
        (7, True, Band.HIGH),
        (20, True, Band.HIGH),
    ],
)
def test_band_for(total: int, any_single_3: bool, expected: Band) -> None:
    assert band_for(total, any_single_3) is expected


def test_band_values_are_stable_strings() -> None:
    assert [b.value for b in Band] == ["routine", "low", "low_medium", "medium", "high"]


_ALL_NORMAL: dict[str, object] = {
    "respiratory_rate": 16,
    "spo2": 98,
    "on_oxygen": False,
    "systolic_bp": 120,
    "pulse": 70,
    "consciousness": "A",
    "temperature": 37.0,
}


def _full(**overrides: object) -> News2:
    kwargs = {**_ALL_NORMAL, **overrides}
    return news2(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "total", "band"),
    [
        ({}, 0, Band.ROUTINE),
        ({"pulse": 95}, 1, Band.LOW),  # pulse 1
        ({"pulse": 95, "temperature": 38.5, "spo2": 94}, 3, Band.LOW),  # 1 + 1 + 1
        ({"on_oxygen": True, "respiratory_rate": 22}, 4, Band.LOW),  # 2 + 2
        ({"consciousness": "C"}, 3, Band.LOW_MEDIUM),  # single 3
        ({"consciousness": "V", "pulse": 95}, 4, Band.LOW_MEDIUM),  # 3 + 1
        ({"on_oxygen": True, "respiratory_rate": 22, "pulse": 95}, 5, Band.MEDIUM),  # 2+2+1
        ({"on_oxygen": True, "respiratory_rate": 22, "pulse": 115}, 6, Band.MEDIUM),  # 2+2+2
        ({"consciousness": "P", "on_oxygen": True}, 5, Band.MEDIUM),  # 3 + 2, single 3
        ({"consciousness": "U", "on_oxygen": True, "pulse": 95}, 6, Band.MEDIUM),  # 3 + 2 + 1
        ({"on_oxygen": True, "respiratory_rate": 22, "pulse": 95, "spo2": 92}, 7, Band.HIGH),
        ({"consciousness": "U", "systolic_bp": 85}, 6, Band.MEDIUM),  # 3 + 3
        ({"consciousness": "U", "systolic_bp": 85, "pulse": 95}, 7, Band.HIGH),  # 3 + 3 + 1
    ],
)
def test_news2_totals_and_bands(overrides: dict[str, object], total: int, band: Band) -> None:
    score = _full(**overrides)
    assert score.total == total
    assert score.band is band
    assert score.complete
    assert score.missing == ()


def test_news2_worst_case_is_20() -> None:
    score = news2(
        respiratory_rate=30,
        spo2=85,
        on_oxygen=True,
        systolic_bp=80,
        pulse=150,
        consciousness="U",
        temperature=34.0,
    )
    assert score.points == {
        "respiratory_rate": 3,
        "spo2": 3,
        "air_or_oxygen": 2,
        "systolic_bp": 3,
        "pulse": 3,
        "consciousness": 3,
        "temperature": 3,
    }
    assert score.total == 20
    assert score.band is Band.HIGH
    assert score.any_single_3


def test_news2_points_per_parameter() -> None:
    score = news2(
        respiratory_rate=22,
        spo2=94,
        on_oxygen=False,
        systolic_bp=105,
        pulse=45,
        consciousness=0,
        temperature=39.5,
    )
    assert score.points == {
        "respiratory_rate": 2,
        "spo2": 1,
        "air_or_oxygen": 0,
        "systolic_bp": 1,
        "pulse": 1,
        "consciousness": 0,
        "temperature": 2,
    }
    assert score.total == 7
    assert score.band is Band.HIGH
    assert not score.any_single_3
    assert score.spo2_scale == 1


def test_news2_scale_2_on_oxygen() -> None:
    score = _full(spo2=97, on_oxygen=True, spo2_scale=2)
    assert score.points["spo2"] == 3
    assert score.points["air_or_oxygen"] == 2
    assert score.total == 5
    assert score.band is Band.MEDIUM
    assert score.spo2_scale == 2


def test_news2_scale_2_on_air_high_saturation_scores_nothing() -> None:
    score = _full(spo2=97, on_oxygen=False, spo2_scale=2)
    assert score.points["spo2"] == 0
    assert score.total == 0


def test_news2_scale_1_spo2_points_do_not_depend_on_oxygen() -> None:
    on_air = _full(spo2=93, on_oxygen=False)
    on_o2 = _full(spo2=93, on_oxygen=True)
    assert on_air.points["spo2"] == on_o2.points["spo2"] == 2
    assert on_o2.total - on_air.total == 2  # only air_or_oxygen differs


# --- missing parameters ---------------------------------------------------------------------


def test_news2_nothing_given() -> None:
    score = news2()
    assert score.total == 0
    assert score.points == {}
    assert score.missing == NEWS2_PARAMETERS
    assert not score.complete
    assert score.band is Band.ROUTINE


def test_news2_missing_reported_in_chart_order_and_not_scored() -> None:
    score = news2(pulse=135, temperature=37.0)
    assert score.points == {"pulse": 3, "temperature": 0}
    assert score.missing == (
        "respiratory_rate",
        "spo2",
        "air_or_oxygen",
        "systolic_bp",
        "consciousness",
    )
    assert score.total == 3
    assert score.band is Band.LOW_MEDIUM
    assert not score.complete


@pytest.mark.parametrize("parameter", ["respiratory_rate", "systolic_bp", "pulse", "temperature"])
def test_each_missing_numeric_parameter_is_reported(parameter: str) -> None:
    score = _full(**{parameter: None})
    assert score.missing == (parameter,)
    assert parameter not in score.points
    assert not score.complete


def test_missing_consciousness_is_reported() -> None:
    score = _full(consciousness=None)
    assert score.missing == ("consciousness",)


def test_missing_spo2_still_scores_oxygen() -> None:
    score = _full(spo2=None, on_oxygen=True)
    assert score.missing == ("spo2",)
    assert score.points["air_or_oxygen"] == 2
    assert score.total == 2


def test_scale_1_oxygen_unknown_scores_spo2_and_reports_air_or_oxygen() -> None:
    score = _full(spo2=93, on_oxygen=None)
    assert score.points["spo2"] == 2
    assert "air_or_oxygen" not in score.points
    assert score.missing == ("air_or_oxygen",)


@pytest.mark.parametrize(("spo2", "expected"), [(97, 0), (95, 0), (93, 0), (90, 0), (86, 1)])
def test_scale_2_oxygen_unknown_scores_spo2_as_on_air(spo2: float, expected: int) -> None:
    score = _full(spo2=spo2, on_oxygen=None, spo2_scale=2)
    assert score.points["spo2"] == expected  # on oxygen 97 would score 3
    assert "air_or_oxygen" not in score.points
    assert score.missing == ("air_or_oxygen",)
    assert not score.complete


# --- qSOFA ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rr", "sbp", "mentation", "total", "positive"),
    [
        (21, 101, False, 0, False),
        (22, 101, False, 1, False),
        (21, 100, False, 1, False),
        (21, 101, True, 1, False),
        (22, 100, False, 2, True),
        (22, 101, True, 2, True),
        (21, 100, True, 2, True),
        (22, 100, True, 3, True),
        (40, 70, True, 3, True),
        (12, 140, False, 0, False),
    ],
)
def test_qsofa_edges(rr: float, sbp: float, mentation: bool, total: int, positive: bool) -> None:
    score = qsofa(respiratory_rate=rr, systolic_bp=sbp, altered_mentation=mentation)
    assert score.total == total
    assert score.positive is positive
    assert score.missing == ()


def test_qsofa_points_by_parameter() -> None:
    score = qsofa(respiratory_rate=22, systolic_bp=101, altered_mentation=True)
    assert score.points == {"respiratory_rate": 1, "systolic_bp": 0, "altered_mentation": 1}


@pytest.mark.parametrize(
    ("rr", "sbp", "total"),
    [
        (21.4, 101, 0),  # -> 21
        (21.5, 101, 1),  # -> 22
        (21, 100.5, 0),  # -> 101
        (21, 100.4, 1),  # -> 100
    ],
)
def test_qsofa_rounding(rr: float, sbp: float, total: int) -> None:
    assert qsofa(respiratory_rate=rr, systolic_bp=sbp, altered_mentation=False).total == total


def test_qsofa_missing() -> None:
    score = qsofa()
    assert score.missing == ("respiratory_rate", "systolic_bp", "altered_mentation")
    assert score.total == 0
    assert score.points == {}
    assert not score.positive

    partial = qsofa(systolic_bp=90, altered_mentation=True)
    assert partial.missing == ("respiratory_rate",)
    assert partial.total == 2
    assert partial.positive


# --- errors ---------------------------------------------------------------------------------

NON_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize(
    "fn",
    [respiratory_rate_points, systolic_bp_points, pulse_points, temperature_points],
)
def test_point_functions_reject_non_finite(fn: object, bad: float) -> None:
    assert callable(fn)
    with pytest.raises(ValueError, match="finite"):
        fn(bad)


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize("scale", [1, 2])
def test_spo2_rejects_non_finite(bad: float, scale: int) -> None:
    with pytest.raises(ValueError, match="finite"):
        spo2_points(bad, on_oxygen=True, scale=scale)


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize(
    "parameter", ["respiratory_rate", "spo2", "systolic_bp", "pulse", "temperature"]
)
def test_news2_rejects_non_finite(parameter: str, bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        _full(**{parameter: bad})


@pytest.mark.parametrize("bad", NON_FINITE)
def test_qsofa_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        qsofa(respiratory_rate=bad)
    with pytest.raises(ValueError, match="finite"):
        qsofa(systolic_bp=bad)


@pytest.mark.parametrize("bad", ["a", "X", "", "AV", "alert", -1, 5, True, False, 1.0])
def test_consciousness_rejects_unknown(bad: object) -> None:
    with pytest.raises(ValueError, match="ACVPU"):
        consciousness_points(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ACVPU"):
        _full(consciousness=bad)


@pytest.mark.parametrize("scale", [0, 3, -1])
def test_bad_spo2_scale(scale: int) -> None:
    with pytest.raises(ValueError, match="scale"):
        spo2_points(95, on_oxygen=False, scale=scale)
    with pytest.raises(ValueError, match="scale"):
        _full(spo2_scale=scale)
    # Rejected even when SpO2 itself is missing.
    with pytest.raises(ValueError, match="scale"):
        news2(pulse=80, spo2_scale=scale)


@pytest.mark.parametrize("total", [-1, 21])
def test_band_for_rejects_impossible_totals(total: int) -> None:
    with pytest.raises(ValueError, match="total"):
        band_for(total, False)


# --- properties -----------------------------------------------------------------------------


def _maybe(strategy: st.SearchStrategy[float]) -> st.SearchStrategy[float | None]:
    return st.none() | strategy


@given(
    rr=_maybe(st.floats(0, 80)),
    spo2=_maybe(st.floats(40, 100)),
    on_oxygen=st.none() | st.booleans(),
    sbp=_maybe(st.floats(40, 300)),
    pulse=_maybe(st.floats(20, 300)),
    consciousness=st.none() | st.sampled_from(["A", "C", "V", "P", "U", 0, 1, 2, 3, 4]),
    temp=_maybe(st.floats(25, 45)),
    scale=st.sampled_from([1, 2]),
)
def test_total_is_sum_of_parameter_points(
    rr: float | None,
    spo2: float | None,
    on_oxygen: bool | None,
    sbp: float | None,
    pulse: float | None,
    consciousness: str | int | None,
    temp: float | None,
    scale: int,
) -> None:
    score = news2(
        respiratory_rate=rr,
        spo2=spo2,
        on_oxygen=on_oxygen,
        systolic_bp=sbp,
        pulse=pulse,
        consciousness=consciousness,
        temperature=temp,
        spo2_scale=scale,
    )
    expected: dict[str, int] = {}
    if rr is not None:
        expected["respiratory_rate"] = respiratory_rate_points(rr)
    if spo2 is not None:
        expected["spo2"] = spo2_points(spo2, on_oxygen=on_oxygen is True, scale=scale)
    if on_oxygen is not None:
        expected["air_or_oxygen"] = air_or_oxygen_points(on_oxygen)
    if sbp is not None:
        expected["systolic_bp"] = systolic_bp_points(sbp)
    if pulse is not None:
        expected["pulse"] = pulse_points(pulse)
    if consciousness is not None:
        expected["consciousness"] = consciousness_points(consciousness)
    if temp is not None:
        expected["temperature"] = temperature_points(temp)

    assert score.points == expected
    assert score.total == sum(expected.values())
    assert 0 <= score.total <= 20
    assert all(0 <= p <= 3 for p in score.points.values())
    assert set(score.missing) | set(score.points) == set(NEWS2_PARAMETERS)
    assert not set(score.missing) & set(score.points)
    assert score.missing == tuple(p for p in NEWS2_PARAMETERS if p in score.missing)
    assert score.complete is (score.missing == ())
    assert score.band is band_for(score.total, any(p == 3 for p in expected.values()))


@given(st.floats(0, 80), st.floats(0, 80))
def test_respiratory_rate_points_monotone_away_from_normal(a: float, b: float) -> None:
    # Further from the 12-20 normal band never scores fewer points (chart is U-shaped).
    lo, hi = sorted((a, b))
    if hi <= 20:
        assert respiratory_rate_points(lo) >= respiratory_rate_points(hi)
    if lo >= 12:
        assert respiratory_rate_points(hi) >= respiratory_rate_points(lo)
