"""The vectorised NEWS2 agrees with the twin's scalar chart on random and boundary values."""

from __future__ import annotations

import numpy as np

from models import news2 as n2
from twin import scores


def test_points_match_the_twin() -> None:
    rng = np.random.default_rng(0)
    edges = np.r_[np.arange(0, 260, 0.5), np.arange(34, 41, 0.05)]
    values = np.r_[rng.uniform(0, 250, 3000), edges]
    for vec, scalar in (
        (n2.respiratory_rate_points, scores.respiratory_rate_points),
        (n2.pulse_points, scores.pulse_points),
        (n2.systolic_bp_points, scores.systolic_bp_points),
        (n2.temperature_points, scores.temperature_points),
    ):
        got = vec(values)
        want = np.array([scalar(float(v)) for v in values])
        np.testing.assert_array_equal(got, want, err_msg=vec.__name__)
    spo2 = np.r_[rng.uniform(60, 100, 2000), np.arange(80, 100.5, 0.5)]
    for on in (False, True):
        for scale in (1, 2):
            got = n2.spo2_points(spo2, np.full(spo2.shape, on), np.full(spo2.shape, scale == 2))
            want = [scores.spo2_points(float(v), on_oxygen=on, scale=scale) for v in spo2]
            np.testing.assert_array_equal(got, want)


def test_total_matches_the_twin_and_missing_scores_zero() -> None:
    rng = np.random.default_rng(1)
    n = 500
    vit = {
        "respiratory_rate": rng.uniform(5, 35, n),
        "spo2": rng.uniform(80, 100, n),
        "systolic_bp": rng.uniform(70, 230, n),
        "pulse": rng.uniform(30, 150, n),
        "temperature": rng.uniform(34, 41, n),
    }
    on = rng.random(n) < 0.3
    confused = rng.random(n) < 0.1
    scale2 = rng.random(n) < 0.2
    miss = rng.random((n, 5)) < 0.2
    args = {k: np.where(miss[:, i], np.nan, v) for i, (k, v) in enumerate(vit.items())}
    got = n2.news2_total(**args, on_oxygen=on, not_alert=confused, scale2=scale2)
    for i in range(n):
        kw = {k: (None if np.isnan(v[i]) else float(v[i])) for k, v in args.items()}
        want = scores.news2(
            **kw,
            on_oxygen=bool(on[i]),
            consciousness=3 if confused[i] else 0,
            spo2_scale=2 if scale2[i] else 1,
        ).total
        assert got[i] == want


def test_non_finite_values_score_their_outer_band_and_nan_scores_zero() -> None:
    x = np.array([np.inf, -np.inf, np.nan])
    np.testing.assert_array_equal(n2.respiratory_rate_points(x), [3, 3, 0])
    np.testing.assert_array_equal(n2.pulse_points(x), [3, 3, 0])
    np.testing.assert_array_equal(n2.systolic_bp_points(x), [3, 3, 0])
    np.testing.assert_array_equal(n2.temperature_points(x), [2, 3, 0])
    no, yes = np.zeros(3, bool), np.ones(3, bool)
    np.testing.assert_array_equal(n2.spo2_points(x, no, no), [0, 3, 0])
    np.testing.assert_array_equal(n2.spo2_points(x, no, yes), [0, 3, 0])
    np.testing.assert_array_equal(n2.spo2_points(x, yes, yes), [3, 3, 0])


def test_shapes_and_dtypes_follow_the_inputs() -> None:
    scalar = n2.pulse_points(135.0)
    assert isinstance(scalar, np.ndarray)
    assert scalar.shape == ()
    assert scalar.dtype == np.int8
    spo2 = np.array([[84.0, 93.0, 97.0], [88.0, 92.0, 98.0]])
    on = np.array([[True], [False]])
    got = n2.spo2_points(spo2, on, True)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, [[2, 1, 3], [0, 0, 0]])
    total = n2.news2_total(
        respiratory_rate=np.float32(25.0),
        spo2=spo2,
        systolic_bp=120.0,
        pulse=[[70.0], [135.0]],
        temperature=np.nan,
        on_oxygen=on,
        not_alert=False,
        scale2=True,
    )
    assert total.dtype == np.int16
    assert total.shape == (2, 3)
    np.testing.assert_array_equal(total, [[3 + 2 + 2, 3 + 1 + 2, 3 + 3 + 2], [6, 6, 6]])
