"""The risk features: the forecast's, scored for all levels at once, equal the level-by-level
build exactly; the history's are NEWS2 and vital changes over the hourly steps."""

from __future__ import annotations

import numpy as np
import pytest

from models import news2 as n2
from models import risk
from models.features import FeatureSpec


def reference_features(quantiles: np.ndarray, ctx: risk.RiskContext, spec: FeatureSpec):
    """The risk features as first written: one level and one horizon at a time."""
    ti = {t: i for i, t in enumerate(spec.targets)}
    lv = {q: risk._level(spec, q) for q in (0.02, 0.1, 0.5, 0.9, 0.98)}
    fixed = np.where(ctx.on_oxygen, 2, 0) + np.where(ctx.not_alert, 3, 0)
    up = {"heart_rate": True, "respiratory_rate": True, "spo2": False, "systolic_bp": False}

    def score(hi: int, lo: int) -> np.ndarray:
        def q(name: str, idx: int) -> np.ndarray:
            return quantiles[:, ti[name], :, idx]

        def pick(name: str) -> np.ndarray:
            return q(name, hi if up[name] else lo)

        temp = np.maximum(
            n2.temperature_points(q("temperature", hi)), n2.temperature_points(q("temperature", lo))
        )
        total = (
            n2.respiratory_rate_points(pick("respiratory_rate")).astype(np.int16)
            + n2.spo2_points(pick("spo2"), ctx.on_oxygen[:, None], ctx.scale2[:, None])
            + n2.systolic_bp_points(pick("systolic_bp"))
            + n2.pulse_points(pick("heart_rate"))
            + temp
        )
        return (total + fixed[:, None]).astype(np.int16)

    def vital_points(name: str, hi: int, lo: int) -> np.ndarray:
        """One vital's NEWS2 points at one level, per step ``[N, D]``."""
        q = quantiles[:, ti[name]]
        if name == "temperature":
            return np.maximum(n2.temperature_points(q[..., hi]), n2.temperature_points(q[..., lo]))
        if name == "spo2":
            return n2.spo2_points(q[..., lo], ctx.on_oxygen[:, None], ctx.scale2[:, None])
        fn = {
            "heart_rate": n2.pulse_points,
            "respiratory_rate": n2.respiratory_rate_points,
            "systolic_bp": n2.systolic_bp_points,
        }[name]
        return fn(q[..., hi if up[name] else lo])

    med = lv[0.5]
    levels = [score(med, med), score(lv[0.9], lv[0.1]), score(lv[0.98], lv[0.02])]
    out = np.zeros((quantiles.shape[0], len(spec.horizon_steps), len(risk.FORECAST_FEATURES)))
    out[..., 0] = 1.0
    out[..., 1] = ctx.news2_now[:, None] / 10.0
    for h, k in enumerate(spec.horizon_steps):
        for j, lev in enumerate(levels):
            out[:, h, 2 + j] = lev[:, :k].max(axis=1) / 10.0
        for j, name in enumerate(
            ("heart_rate", "respiratory_rate", "spo2", "systolic_bp", "temperature")
        ):
            last = ctx.last_obs[:, ti[name]]
            fc = quantiles[:, ti[name], k - 1, med]
            scale = spec.center_scale(name)[1]
            out[:, h, 5 + j] = np.where(np.isfinite(last), (fc - last) / scale, 0.0)
            out[:, h, 10 + j] = vital_points(name, lv[0.9], lv[0.1])[:, :k].max(axis=1) / 3.0
            width = quantiles[:, ti[name], k - 1, lv[0.9]] - quantiles[:, ti[name], k - 1, lv[0.1]]
            out[:, h, 15 + j] = width / scale
    return out


@pytest.mark.parametrize("n", [1, 7, 300])
def test_features_equal_level_by_level(spec: FeatureSpec, n: int) -> None:
    rng = np.random.default_rng(n)
    t, d, nq = len(spec.targets), spec.decoder_steps, len(spec.quantiles)
    centre = np.array([spec.center_scale(x)[0] for x in spec.targets])
    spread = np.array([spec.center_scale(x)[1] for x in spec.targets]) * 2.5
    base = centre[None, :, None] + spread[None, :, None] * rng.standard_normal((n, t, d))
    offsets = np.sort(rng.standard_normal((n, t, d, nq)), axis=-1) * spread[None, :, None, None]
    quantiles = (base[..., None] + offsets).astype(np.float32)
    last = (centre + spread * rng.standard_normal((n, t))).astype(np.float32)
    last[rng.random((n, t)) < 0.2] = np.nan
    ctx = risk.RiskContext(
        news2_now=rng.integers(0, 12, n).astype(np.float64),
        on_oxygen=rng.random(n) < 0.4,
        not_alert=rng.random(n) < 0.2,
        scale2=rng.random(n) < 0.3,
        last_obs=last,
        history=np.zeros((n, spec.encoder_steps, 5)),
        labs=np.zeros((n, 4), np.float32),
    )
    got = risk.forecast_features(quantiles, ctx, spec)
    ref = reference_features(quantiles, ctx, spec)
    assert got.dtype == ref.dtype == np.float64
    np.testing.assert_array_equal(got, ref)
    assert np.unique(got[..., 2:5]).size > 1  # the scores are not all alike


def test_risk_interval_is_the_bootstrap_10_90_range(spec: FeatureSpec) -> None:
    rng = np.random.default_rng(0)
    h, b, f = len(spec.risk_horizons_h), 20, len(risk.FEATURES)
    head = risk.RiskHead(spec.risk_horizons_h, rng.normal(size=(h, f)), rng.normal(size=(h, b, f)))
    feats = rng.normal(size=(5, h, f))
    p, low, high = head.predict(feats)
    zb = np.einsum("nhf,hbf->nhb", feats, head.boot)
    pb = 1 / (1 + np.exp(-np.clip(zb, -30, 30)))
    np.testing.assert_array_equal(low, np.quantile(pb, 0.1, axis=-1))
    np.testing.assert_array_equal(high, np.quantile(pb, 0.9, axis=-1))
    assert (low <= high).all()
    assert p.shape == (5, h)


def test_history_features_read_the_recent_slope(spec: FeatureSpec) -> None:
    """A patient whose heart rate climbs and SpO2 falls over 6 h scores adverse trends and a
    rising hourly NEWS2; a stable patient scores none. Every horizon sees the same history."""
    e = spec.encoder_steps
    hist = np.zeros((2, e, 5))
    hist[:] = [75.0, 16.0, 97.0, 125.0, 37.0]  # HR, RR, SpO2, SBP, temperature
    hist[1, -7:, 0] = np.linspace(75, 115, 7)  # HR rises 40 bpm over 6 h
    hist[1, -7:, 2] = np.linspace(97, 93, 7)  # SpO2 falls 4 %
    ctx = risk.RiskContext(
        news2_now=np.array([0.0, 4.0]),
        on_oxygen=np.zeros(2, bool),
        not_alert=np.zeros(2, bool),
        scale2=np.zeros(2, bool),
        last_obs=np.c_[hist[:, -1, [0, 1, 2, 4, 3]], [130, 130]].astype(np.float32),
        history=hist,
        labs=np.zeros((2, 4), np.float32),
    )
    got = dict(zip(risk.HISTORY_FEATURES, risk.history_features(ctx, spec).T, strict=True))
    assert all(v[0] == 0 for v in got.values())  # stable: nothing moves
    assert got["news2_hourly"][1] == 0.4  # HR 115 -> 2, SpO2 93 -> 2
    assert got["news2_hourly_change_6h"][1] == 0.4
    assert got["trend_6h_heart_rate"][1] == 40 / spec.center_scale("heart_rate")[1]
    assert got["trend_6h_spo2"][1] == 4 / spec.center_scale("spo2")[1]  # a fall is adverse
    assert 0 < got["trend_3h_heart_rate"][1] < got["trend_6h_heart_rate"][1]
    q = risk.persistence_quantiles(ctx, spec)
    feats = risk.features(q, ctx, spec)
    assert feats.shape == (2, len(spec.risk_horizons_h), len(risk.FEATURES))
    np.testing.assert_array_equal(
        feats[..., : len(risk.FORECAST_FEATURES)], risk.forecast_features(q, ctx, spec)
    )
    assert (
        feats[:, :1, len(risk.FORECAST_FEATURES) :] == feats[:, :, len(risk.FORECAST_FEATURES) :]
    ).all()


def test_per_vital_forecast_features_name_the_vital_and_its_spread(spec: FeatureSpec) -> None:
    """A heart rate whose adverse (0.9) forecast crosses 131 bpm at step 4 scores 3 points (1.0)
    from the horizon that contains step 4 on, and nothing before; the other vitals stay at 0;
    the spread is the 80 % interval's width at the horizon, in normalisation scales."""
    t, d, nq = len(spec.targets), spec.decoder_steps, len(spec.quantiles)
    normal = {"heart_rate": 75, "respiratory_rate": 16, "spo2": 97, "temperature": 37.0}
    centre = np.array([normal.get(x, 125.0 if x == "systolic_bp" else 100.0) for x in spec.targets])
    offsets = np.linspace(-1, 1, nq)  # the levels evenly spaced around each centre
    quantiles = np.broadcast_to(centre[None, :, None, None] + offsets, (1, t, d, nq)).copy()
    hr, q90, q10 = spec.targets.index("heart_rate"), risk._level(spec, 0.9), risk._level(spec, 0.1)
    quantiles[0, hr, 3:, q90] = 135.0  # adverse heart rate from step 4 (1-based) on
    ctx = risk.RiskContext(
        news2_now=np.zeros(1),
        on_oxygen=np.zeros(1, bool),
        not_alert=np.zeros(1, bool),
        scale2=np.zeros(1, bool),
        last_obs=centre[None].astype(np.float32),
        history=np.zeros((1, spec.encoder_steps, 5)),
        labs=np.zeros((1, 4), np.float32),
    )
    feats = risk.forecast_features(quantiles.astype(np.float32), ctx, spec)[0]
    got = {n: feats[:, i] for i, n in enumerate(risk.FORECAST_FEATURES)}
    expect = [1.0 if k >= 4 else 0.0 for k in spec.horizon_steps]
    np.testing.assert_array_equal(got["points_adverse_heart_rate"], expect)
    for v in ("respiratory_rate", "spo2", "systolic_bp", "temperature"):
        np.testing.assert_array_equal(got[f"points_adverse_{v}"], 0.0)
    width = offsets[q90] - offsets[q10]
    scale = spec.center_scale("spo2")[1]
    np.testing.assert_allclose(got["spread_80_spo2"], width / scale, rtol=1e-5)
    hr_width = np.array(
        [(135.0 if k >= 4 else 75 + offsets[q90]) - (75 + offsets[q10]) for k in spec.horizon_steps]
    )
    np.testing.assert_allclose(
        got["spread_80_heart_rate"], hr_width / spec.center_scale("heart_rate")[1], rtol=1e-5
    )


def test_a_head_without_refits_round_trips_and_ranks(spec: FeatureSpec) -> None:
    """The persistence baseline is fitted without bootstrap refits: it survives the checkpoint's
    JSON with its ``[H, 0, F]`` shape and scores exactly as before."""
    rng = np.random.default_rng(1)
    n, h, f = 400, len(spec.risk_horizons_h), len(risk.FEATURES)
    feats = rng.normal(size=(n, h, f))
    feats[..., 0] = 1.0
    labels = (rng.random((n, h)) < 1 / (1 + np.exp(-2 * feats[..., 1]))).astype(np.float32)
    head = risk.fit(feats, labels, np.arange(n) // 4, spec, n_boot=0, kind="persistence")
    back = risk.RiskHead.from_dict(head.to_dict())
    assert back.boot.shape == (h, 0, f)
    assert back.kind == "persistence"
    np.testing.assert_array_equal(back.probability(feats), head.probability(feats))
    assert (head.weights[:, 1] > 0.5).all()  # it learnt the informative feature


def reference_history(ctx: risk.RiskContext, spec: FeatureSpec) -> np.ndarray:
    """The history features as first written: one vital and one lag at a time."""
    hist = ctx.history
    e = hist.shape[1]
    lags = [min(round(h * 3600 / spec.step_s), e - 1) for h in (3, 6)]
    steps = sorted({1, 2, 3, *(lag + 1 for lag in lags)} & set(range(1, e + 1)))
    vitals = ("heart_rate", "respiratory_rate", "spo2", "systolic_bp", "temperature")
    vit = {v: hist[:, [e - k for k in steps], j] for j, v in enumerate(vitals)}
    score = n2.news2_total(
        respiratory_rate=vit["respiratory_rate"],
        spo2=vit["spo2"],
        systolic_bp=vit["systolic_bp"],
        pulse=vit["heart_rate"],
        temperature=vit["temperature"],
        on_oxygen=ctx.on_oxygen[:, None],
        not_alert=ctx.not_alert[:, None],
        scale2=ctx.scale2[:, None],
    ).astype(np.float64)
    col = {k: i for i, k in enumerate(steps)}
    now = score[:, col[1]]
    cols = [now, score[:, [col[k] for k in steps if k <= 3]].max(axis=1)]
    cols += [now - score[:, col[lag + 1]] for lag in lags]
    cols = [c / 10.0 for c in cols]
    sign = {"spo2": -1.0, "systolic_bp": -1.0}
    for v in vitals:
        scale = spec.center_scale(v)[1]
        cols += [
            sign.get(v, 1.0) * (vit[v][:, col[1]] - vit[v][:, col[lag + 1]]) / scale for lag in lags
        ]
    return np.column_stack([*cols, ctx.labs.astype(np.float64)])


@pytest.mark.parametrize("n", [1, 7, 300])
def test_history_features_equal_vital_by_vital(spec: FeatureSpec, n: int) -> None:
    rng = np.random.default_rng(10 + n)
    e = spec.encoder_steps
    centre = np.array([80.0, 17.0, 95.0, 125.0, 37.0])
    scale = np.array([15.0, 5.0, 3.0, 20.0, 0.7])
    # float32 values, as de-normalised encoder inputs are, many of them on band edges
    hist = centre + 2.5 * scale * rng.standard_normal((n, e, 5))
    edge = rng.random(hist.shape) < 0.3
    hist[edge] = np.round(hist[edge] * 2) / 2
    hist = hist.astype(np.float32).astype(np.float64)
    ctx = risk.RiskContext(
        news2_now=np.zeros(n),
        on_oxygen=rng.random(n) < 0.4,
        not_alert=rng.random(n) < 0.2,
        scale2=rng.random(n) < 0.3,
        last_obs=np.zeros((n, len(spec.targets)), np.float32),
        history=hist,
        labs=rng.standard_normal((n, 4)).astype(np.float32),
    )
    got, ref = risk.history_features(ctx, spec), reference_history(ctx, spec)
    assert got.dtype == ref.dtype
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got.view(np.int64), ref.view(np.int64))  # bitwise


@pytest.mark.parametrize("boot", [1, 2, 3, 4, 20, 33])
def test_bootstrap_interval_equals_numpy_quantile_bit_for_bit(boot: int) -> None:
    rng = np.random.default_rng(boot)
    pb = 1 / (1 + np.exp(-rng.normal(0, 4, (50, 6, boot))))
    pb[:10] = np.round(pb[:10], 1)  # ties
    pb[10, 2, 0] = np.nan  # numpy's NaN rule
    for levels in ((0.1, 0.9), (0.0, 0.5, 1.0)):
        got = risk._quantiles(pb, levels)
        ref = np.quantile(pb, levels, axis=-1)
        assert len(got) == len(levels)
        for g, r in zip(got, ref, strict=True):
            assert g.dtype == r.dtype
            assert g.shape == r.shape
            np.testing.assert_array_equal(g.view(np.int64), r.view(np.int64))
