"""Risk of deterioration by horizon, with uncertainty, from a quantile forecast and the history.

Design (chosen by cross-fitting on training-side cohorts, see docs/forecasting.md "Risk"): the
TFT forecasts vitals, not the outcome; risk is a *calibrated mapping* from two groups of
features through one L2-regularised logistic regression per horizon.

- Forecast (``FORECAST_FEATURES``): for a horizon of k steps, NEWS2 scored on the forecast at
  three quantile levels - the median, the adverse 90 % (the 0.9 quantile of HR, RR and
  temperature with the 0.1 quantile of SpO2 and SBP) and the extreme 98 % - each level's worst
  step within the horizon, the current NEWS2, the forecast change of each vital, and per vital
  its NEWS2 points on the adverse forecast (worst step) and the 80 % interval's width at the
  horizon (``VITAL_FORECAST_FEATURES``).
- Observed history (``HISTORY_FEATURES``, the same for every horizon): NEWS2 scored on the last
  hourly step, its worst over the last 3 h and its change over 3 h and 6 h, each vital's change
  over 3 h and 6 h (signed so that positive is adverse, in normalisation scales), and the
  latest lactate, WBC, CRP and creatinine. The forecast features alone miss the recent slope
  that precedes a deterioration (``evaluation.risk_designs``: "tft_quantiles only").

The head is fitted on eligible windows of every training-cohort patient (training, validation
and calibration) and of a *risk cohort*, more patients of the same recipe that only the heads
see (``models.training``): with the training cohort's 36 deteriorations alone, the per-vital
features did not pay for themselves at 12 h. The same head fitted on a persistence forecast
(every quantile = the last observed value) with the same history features is the
persistence-based risk baseline, so the two differ only in the forecast.

Uncertainty is a patient-level bootstrap of the head: ``n_boot`` refits on resampled patients;
the interval is their 10th-90th percentile. Applying the head is a ``[N, F] @ [F, B]`` product
per horizon: nothing that would slow the streaming path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from models import news2 as n2
from models.features import FeatureSpec

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
_VITALS = ("heart_rate", "respiratory_rate", "spo2", "systolic_bp", "temperature")
# Per vital: its NEWS2 points on the adverse forecast (worst step within the horizon) and the
# forecast's 80 % interval width at the horizon; the totals above cannot say which vital is
# heading for a band edge, nor how sure the network is of it.
VITAL_FORECAST_FEATURES: tuple[str, ...] = (
    *(f"points_adverse_{v}" for v in _VITALS),
    *(f"spread_80_{v}" for v in _VITALS),
)
FORECAST_FEATURES: tuple[str, ...] = (
    "bias",
    "news2_now",
    "news2_median",
    "news2_adverse",
    "news2_extreme",
    "d_heart_rate",
    "d_respiratory_rate",
    "d_spo2",
    "d_systolic_bp",
    "d_temperature",
    *VITAL_FORECAST_FEATURES,
)
_VI = {v: j for j, v in enumerate(_VITALS)}  # vital -> its index on a vitals axis
_UP = {"heart_rate": True, "respiratory_rate": True, "spo2": False, "systolic_bp": False}
# The sign that makes a vital's change adverse; temperature (not listed) counts a rise, as
# the fever of sepsis, the deterioration the simulated cohorts see most.
_ADVERSE = {"heart_rate": 1.0, "respiratory_rate": 1.0, "spo2": -1.0, "systolic_bp": -1.0}
_LAGS_H = (3, 6)  # hours back for the history's changes
_LABS = ("lactate", "wbc", "crp", "creatinine")
HISTORY_FEATURES: tuple[str, ...] = (
    "news2_hourly",
    "news2_hourly_max_3h",
    *(f"news2_hourly_change_{h}h" for h in _LAGS_H),
    *(f"trend_{h}h_{v}" for v in _VITALS for h in _LAGS_H),
    *_LABS,
)
FEATURES: tuple[str, ...] = (*FORECAST_FEATURES, *HISTORY_FEATURES)


@dataclass(frozen=True)
class RiskContext:
    """Per-forecast facts besides the forecast itself (axis 0: the forecasts)."""

    news2_now: F64
    on_oxygen: npt.NDArray[np.bool_]
    not_alert: npt.NDArray[np.bool_]
    scale2: npt.NDArray[np.bool_]
    last_obs: F32  # [N, T] raw last observed step (NaN: none)
    history: F64  # [N, E, len(_VITALS)] raw hourly encoder steps (filled) of the NEWS2 vitals
    labs: F32  # [N, len(_LABS)] normalised latest labs (unknown: 0, the centre)

    @classmethod
    def of(cls, inputs: Any, spec: FeatureSpec) -> RiskContext:
        """From anything carrying ``statics``, ``enc_unknown``, ``news2_now`` and ``last_obs``
        in the spec's layout: training ``Windows`` and the fast path's ``ModelInputs`` alike."""
        lay = _layout(spec)
        cs = lay.center_scale
        enc = inputs.enc_unknown[:, :, lay.unknown_vitals].astype(np.float64)
        return cls(
            news2_now=inputs.news2_now.astype(np.float64),
            on_oxygen=inputs.statics[:, lay.on_oxygen] > 0.5,
            not_alert=inputs.statics[:, lay.not_alert] > 0.5,
            scale2=inputs.statics[:, lay.spo2_scale2] > 0.5,
            last_obs=inputs.last_obs,
            history=enc * cs[:, 1] + cs[:, 0],
            labs=inputs.statics[:, lay.static_labs],
        )


@dataclass(frozen=True)
class _Layout:
    """A spec's indices and constants for the risk features, built once per spec: rebuilding
    them on every call cost more than some of the arithmetic at small batches."""

    unknown_vitals: list[int]  # _VITALS' columns of enc_unknown
    on_oxygen: int  # columns of statics
    not_alert: int
    spo2_scale2: int
    static_labs: list[int]
    center_scale: F64  # [V, 2] of _VITALS
    targets: list[int]  # _VITALS' rows of the quantiles' target axis
    med: int  # quantile levels
    up: list[int]  # median, adverse and extreme levels where a rise is adverse ...
    down: list[int]  # ... and where a fall is
    lo80: int
    hi80: int
    horizons: list[int]  # decoder step index ending each risk horizon
    scale32: F32  # [V] scales as float32: the forecast's arithmetic stays in float32
    adverse_sign: F64  # [V] the sign that makes a change adverse (_ADVERSE)


@cache
def _layout(spec: FeatureSpec) -> _Layout:
    si = {n: i for i, n in enumerate(spec.static_reals)}
    ui = {n: i for i, n in enumerate(spec.unknown_reals)}
    ti = {t: i for i, t in enumerate(spec.targets)}
    med = _level(spec, 0.5)
    layout = _Layout(
        unknown_vitals=[ui[v] for v in _VITALS],
        on_oxygen=si["on_oxygen"],
        not_alert=si["not_alert"],
        spo2_scale2=si["spo2_scale2"],
        static_labs=[si[lab] for lab in _LABS],
        center_scale=np.array([spec.center_scale(v) for v in _VITALS], np.float64),
        targets=[ti[v] for v in _VITALS],
        med=med,
        up=[med, _level(spec, 0.9), _level(spec, 0.98)],
        down=[med, _level(spec, 0.1), _level(spec, 0.02)],
        lo80=_level(spec, 0.1),
        hi80=_level(spec, 0.9),
        horizons=[k - 1 for k in spec.horizon_steps],
        scale32=np.array([spec.center_scale(v)[1] for v in _VITALS], np.float32),
        adverse_sign=np.array([_ADVERSE.get(v, 1.0) for v in _VITALS], np.float64),
    )
    for a in (layout.center_scale, layout.scale32, layout.adverse_sign):
        a.flags.writeable = False  # shared by every call with the spec
    return layout


def _level(spec: FeatureSpec, q: float) -> int:
    return int(np.argmin(np.abs(np.asarray(spec.quantiles) - q)))


def features(quantiles: F32, ctx: RiskContext, spec: FeatureSpec) -> F64:
    """``[N, H, len(FEATURES)]``: the forecast's features, then the history's (every horizon)."""
    out = np.empty((quantiles.shape[0], len(spec.horizon_steps), len(FEATURES)))
    _forecast_features(quantiles, ctx, spec, out[..., : len(FORECAST_FEATURES)])
    out[..., len(FORECAST_FEATURES) :] = history_features(ctx, spec)[:, None, :]
    return out


def history_features(ctx: RiskContext, spec: FeatureSpec) -> F64:
    """``[N, len(HISTORY_FEATURES)]`` from the observed hourly history and the latest labs.

    NEWS2 is scored on each hourly step with the oxygen and ACVPU of the origin. The steps are
    de-normalised from the network's float32 inputs, so a value on a band edge may score as
    its neighbour; training windows and twin states build the very same inputs, so training
    and serving agree. Lags longer than the encoder read its first step (the oldest it has).
    """
    hist = ctx.history
    n, e = hist.shape[:2]
    lags = [min(round(h * 3600 / spec.step_s), e - 1) for h in _LAGS_H]
    steps = sorted({1, 2, 3, *(lag + 1 for lag in lags)} & set(range(1, e + 1)))
    col = {k: i for i, k in enumerate(steps)}  # steps back -> column
    vit = hist[:, [e - k for k in steps], :]  # [N, steps, V]
    score = n2.news2_of(
        {v: vit[:, :, j] for j, v in enumerate(_VITALS)},
        on_oxygen=ctx.on_oxygen[:, None],
        not_alert=ctx.not_alert[:, None],
        scale2=ctx.scale2[:, None],
    ).astype(np.float64)
    lay = _layout(spec)
    n_l, n_v = len(lags), len(_VITALS)
    out = np.empty((n, len(HISTORY_FEATURES)))
    now = score[:, col[1]]
    out[:, 0] = now / 10.0
    out[:, 1] = score[:, [col[k] for k in steps if k <= 3]].max(axis=1) / 10.0
    lagged = [col[lag + 1] for lag in lags]
    out[:, 2 : 2 + n_l] = (now[:, None] - score[:, lagged]) / 10.0
    # every vital's change over every lag at once, [N, V, lag] in HISTORY_FEATURES' order
    change = vit[:, col[1], :, None] - vit[:, lagged, :].transpose(0, 2, 1)
    scale = lay.center_scale[:, 1, None]
    trend = lay.adverse_sign[:, None] * change / scale
    out[:, 2 + n_l : 2 + n_l + n_v * n_l] = trend.reshape(n, n_v * n_l)
    out[:, 2 + n_l + n_v * n_l :] = ctx.labs
    return out


def forecast_features(quantiles: F32, ctx: RiskContext, spec: FeatureSpec) -> F64:
    """``[N, H, len(FORECAST_FEATURES)]`` risk features from quantiles ``[N, T, D, Q]``."""
    out = np.empty((quantiles.shape[0], len(spec.horizon_steps), len(FORECAST_FEATURES)))
    _forecast_features(quantiles, ctx, spec, out)
    return out


def _forecast_features(quantiles: F32, ctx: RiskContext, spec: FeatureSpec, out: F64) -> None:
    """``forecast_features`` written into ``out`` (a view of ``features``' array: no copy).

    The three levels are scored together (a trailing level axis), each horizon's worst step
    read from a running maximum and the vitals handled as one axis: the same elementwise
    arithmetic as level by level, horizon by horizon and vital by vital, in a fraction of the
    numpy calls - which is what a small batch pays for.
    """
    lay = _layout(spec)
    steps = lay.horizons
    qv = quantiles[:, lay.targets]  # [N, V, D, Q] in _VITALS order
    up, down = qv[..., lay.up], qv[..., lay.down]  # [N, V, D, level]

    def pick(name: str) -> F32:
        return up[:, _VI[name]] if _UP[name] else down[:, _VI[name]]  # [N, D, level]

    temperature = _VI["temperature"]
    points = np.stack(  # each vital's NEWS2 points [N, V, D, level], in _VITALS order
        [
            n2.pulse_points(pick("heart_rate")),
            n2.respiratory_rate_points(pick("respiratory_rate")),
            n2.spo2_points(pick("spo2"), ctx.on_oxygen[:, None, None], ctx.scale2[:, None, None]),
            n2.systolic_bp_points(pick("systolic_bp")),
            np.maximum(
                n2.temperature_points(up[:, temperature]),
                n2.temperature_points(down[:, temperature]),
            ),
        ],
        axis=1,
    )
    fixed = np.where(ctx.on_oxygen, 2, 0) + np.where(ctx.not_alert, 3, 0)
    scores = (points.sum(axis=1, dtype=np.int16) + fixed[:, None, None]).astype(np.int16)
    worst = np.maximum.accumulate(scores, axis=1)  # worst step so far [N, D, level]
    out[..., 0] = 1.0
    out[..., 1] = ctx.news2_now[:, None] / 10.0
    out[..., 2:5] = worst[:, steps, :] / 10.0
    n_v = len(_VITALS)
    # Per vital, float32 as the quantiles: the forecast change from the last observed value.
    last = ctx.last_obs[:, lay.targets, None]  # [N, V, 1]
    fc = qv[:, :, steps, lay.med]  # [N, V, H]
    scale = lay.scale32[:, None]
    change = np.where(np.isfinite(last), (fc - last) / scale, 0.0)
    out[..., 5 : 5 + n_v] = change.transpose(0, 2, 1)
    # Which vital drives the adverse forecast (its worst points so far, of 3), and how unsure
    # the network is about it (the 80 % interval's width at the horizon).
    adverse = np.maximum.accumulate(points[..., 1], axis=2)  # [N, V, D]
    out[..., 5 + n_v : 5 + 2 * n_v] = adverse[:, :, steps].transpose(0, 2, 1) / 3.0
    width = qv[:, :, steps, lay.hi80] - qv[:, :, steps, lay.lo80]
    out[..., 5 + 2 * n_v :] = (width / scale).transpose(0, 2, 1)


def persistence_quantiles(ctx: RiskContext, spec: FeatureSpec) -> F32:
    """A persistence forecast as quantiles: the last observed value at every step and level."""
    centers = np.array([spec.center_scale(t)[0] for t in spec.targets], np.float32)
    last = np.where(np.isfinite(ctx.last_obs), ctx.last_obs, centers[None, :])
    shape = (last.shape[0], last.shape[1], spec.decoder_steps, len(spec.quantiles))
    return np.broadcast_to(last[:, :, None, None], shape).astype(np.float32)


def fit_logistic(x: F64, y: F64, l2: float = 1.0, iters: int = 50, start: F64 | None = None) -> F64:
    """L2-regularised logistic regression by Newton's method (the bias is not penalised).

    ``start``: initial weights (a bootstrap refit starts from the point fit: half the steps).
    """
    _n, f = x.shape
    w = np.zeros(f) if start is None else start.copy()
    pen = np.full(f, l2)
    pen[0] = 0.0
    for _ in range(iters):
        z = np.clip(x @ w, -30, 30)
        p = 1 / (1 + np.exp(-z))
        grad = x.T @ (p - y) + pen * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(pen + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


@dataclass(frozen=True)
class RiskHead:
    """Per horizon: the point fit ``weights[h]`` and bootstrap refits ``boot[h]`` (``[B, F]``)."""

    horizons_h: tuple[float, ...]
    weights: F64  # [H, F]
    boot: F64  # [H, B, F]
    kind: str = "tft_quantiles"

    def probability(self, feats: F64) -> F64:
        """The point fit's risk ``[N, H]`` (no interval: what a ranking needs)."""
        z: F64 = np.einsum("nhf,hf->nh", feats, self.weights)
        p: F64 = 1 / (1 + np.exp(-np.clip(z, -30, 30)))
        return p

    def predict(self, feats: F64) -> tuple[F64, F64, F64]:
        """(risk, low, high) ``[N, H]`` from ``features(...)``."""
        p = self.probability(feats)
        zb = np.einsum("nhf,hbf->nhb", feats, self.boot)
        pb = 1 / (1 + np.exp(-np.clip(zb, -30, 30)))
        low, high = _quantiles(pb, (0.1, 0.9))
        return p, low, high

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "features": list(FEATURES),
            "horizons_h": list(self.horizons_h),
            "weights": self.weights.tolist(),
            "boot": self.boot.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RiskHead:
        if list(data["features"]) != list(FEATURES):
            from models.errors import SpecMismatch

            raise SpecMismatch("the risk head was fitted on other features than this code builds")
        weights = np.asarray(data["weights"], dtype=np.float64)
        n_h, n_f = weights.shape
        return cls(
            tuple(data["horizons_h"]),
            weights,
            # [H, B, F] even with no refits (B = 0: the persistence baseline's, never predicted)
            np.asarray(data["boot"], dtype=np.float64).reshape(n_h, -1, n_f),
            str(data.get("kind", "tft_quantiles")),
        )


def _quantiles(x: F64, levels: tuple[float, ...]) -> list[F64]:
    """``list(np.quantile(x, levels, axis=-1))`` (method "linear"), bit for bit, from one sort.

    ``np.quantile`` spends most of its time in Python-level steps around a partition (a tenth
    of a forecast batch's post-network work at 64 rows); this sorts once and interpolates
    with numpy's own formula (``numpy.lib._function_base_impl._lerp``: from the lower
    neighbour below a weight of 0.5, from the upper one from 0.5 on). Edge cases - fewer than
    two values, a level at the top, NaN - go to ``np.quantile`` itself.
    ``tests/models/test_risk_features.py`` holds the two equal.
    """
    n = x.shape[-1]
    virtual = (n - 1) * np.asarray(levels, dtype=np.float64)  # as numpy computes them
    below = np.floor(virtual)
    if n < 2 or not (virtual < n - 1).all() or np.isnan(x).any():
        return list(np.quantile(x, levels, axis=-1))
    ordered = np.sort(x, axis=-1)
    out = []
    for v, i in zip(virtual.tolist(), below.tolist(), strict=True):
        a, b = ordered[..., int(i)], ordered[..., int(i) + 1]
        t = v - i
        diff = b - a
        out.append(b - diff * (1 - t) if t >= 0.5 else a + diff * t)
    return out


def fit(
    feats: F64,
    labels: F32,
    groups: npt.NDArray[np.int64],
    spec: FeatureSpec,
    *,
    n_boot: int = 20,
    seed: int = 0,
    kind: str = "tft_quantiles",
) -> RiskHead:
    """Fit on eligible, uncensored rows (NaN labels are skipped per horizon); ``n_boot=0``
    fits the point weights only (``probability`` then works, ``predict`` needs refits)."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    n_h, n_f = feats.shape[1], feats.shape[2]
    weights = np.zeros((n_h, n_f))
    boot = np.zeros((n_h, n_boot, n_f))
    draws = [rng.choice(uniq, size=uniq.size, replace=True) for _ in range(n_boot)]
    for h in range(n_h):
        ok = np.isfinite(labels[:, h])
        x, y, g = feats[ok, h], labels[ok, h].astype(np.float64), groups[ok]
        if y.size == 0 or y.min() == y.max():
            weights[h, 0] = -5.0 if y.size == 0 or y.max() == 0 else 5.0
            boot[h] = weights[h]
            continue
        weights[h] = fit_logistic(x, y)
        rows_of = {p: np.nonzero(g == p)[0] for p in np.unique(g)}
        for b, draw in enumerate(draws):
            idx = np.concatenate([rows_of[p] for p in draw if p in rows_of] or [np.arange(0)])
            if idx.size == 0 or y[idx].min() == y[idx].max():
                boot[h, b] = weights[h]
            else:
                boot[h, b] = fit_logistic(x[idx], y[idx], start=weights[h])
    return RiskHead(tuple(spec.risk_horizons_h), weights, boot, kind)
