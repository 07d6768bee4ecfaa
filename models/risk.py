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
        si = {n: i for i, n in enumerate(spec.static_reals)}
        ui = {n: i for i, n in enumerate(spec.unknown_reals)}
        cs = np.array([spec.center_scale(v) for v in _VITALS], np.float64)  # [V, 2]
        enc = inputs.enc_unknown[:, :, [ui[v] for v in _VITALS]].astype(np.float64)
        return cls(
            news2_now=inputs.news2_now.astype(np.float64),
            on_oxygen=inputs.statics[:, si["on_oxygen"]] > 0.5,
            not_alert=inputs.statics[:, si["not_alert"]] > 0.5,
            scale2=inputs.statics[:, si["spo2_scale2"]] > 0.5,
            last_obs=inputs.last_obs,
            history=enc * cs[:, 1] + cs[:, 0],
            labs=inputs.statics[:, [si[lab] for lab in _LABS]],
        )


def _level(spec: FeatureSpec, q: float) -> int:
    return int(np.argmin(np.abs(np.asarray(spec.quantiles) - q)))


def features(quantiles: F32, ctx: RiskContext, spec: FeatureSpec) -> F64:
    """``[N, H, len(FEATURES)]``: the forecast's features, then the history's (every horizon)."""
    fc = forecast_features(quantiles, ctx, spec)
    hist = history_features(ctx, spec)
    shape = (*fc.shape[:2], hist.shape[1])
    return np.concatenate([fc, np.broadcast_to(hist[:, None, :], shape)], axis=-1)


def history_features(ctx: RiskContext, spec: FeatureSpec) -> F64:
    """``[N, len(HISTORY_FEATURES)]`` from the observed hourly history and the latest labs.

    NEWS2 is scored on each hourly step with the oxygen and ACVPU of the origin. The steps are
    de-normalised from the network's float32 inputs, so a value on a band edge may score as
    its neighbour; training windows and twin states build the very same inputs, so training
    and serving agree. Lags longer than the encoder read its first step (the oldest it has).
    """
    hist = ctx.history
    e = hist.shape[1]
    lags = [min(round(h * 3600 / spec.step_s), e - 1) for h in _LAGS_H]
    steps = sorted({1, 2, 3, *(lag + 1 for lag in lags)} & set(range(1, e + 1)))
    vit = {v: hist[:, [e - k for k in steps], j] for j, v in enumerate(_VITALS)}  # [N, steps]
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
    col = {k: i for i, k in enumerate(steps)}  # steps back -> column
    now = score[:, col[1]]
    cols = [now, score[:, [col[k] for k in steps if k <= 3]].max(axis=1)]
    cols += [now - score[:, col[lag + 1]] for lag in lags]
    cols = [c / 10.0 for c in cols]
    for v in _VITALS:
        scale = spec.center_scale(v)[1]
        sign = _ADVERSE.get(v, 1.0)
        cols += [sign * (vit[v][:, col[1]] - vit[v][:, col[lag + 1]]) / scale for lag in lags]
    return np.column_stack([*cols, ctx.labs.astype(np.float64)])


def forecast_features(quantiles: F32, ctx: RiskContext, spec: FeatureSpec) -> F64:
    """``[N, H, len(FORECAST_FEATURES)]`` risk features from quantiles ``[N, T, D, Q]``.

    The three levels are scored together (a trailing level axis) and each horizon's worst step
    read from a running maximum: the same elementwise arithmetic as level by level and horizon
    by horizon, in a fifth of the numpy calls - which is what a small batch pays for.
    """
    ti = {t: i for i, t in enumerate(spec.targets)}
    med = _level(spec, 0.5)
    up = [med, _level(spec, 0.9), _level(spec, 0.98)]  # median, adverse, extreme
    down = [med, _level(spec, 0.1), _level(spec, 0.02)]
    fixed = np.where(ctx.on_oxygen, 2, 0) + np.where(ctx.not_alert, 3, 0)

    def q(name: str, levels: list[int]) -> F32:
        return quantiles[:, ti[name]][:, :, levels]  # [N, D, level]

    def pick(name: str) -> F32:
        return q(name, up if _UP[name] else down)

    points = {  # each vital's NEWS2 points [N, D, level], in _VITALS order
        "heart_rate": n2.pulse_points(pick("heart_rate")),
        "respiratory_rate": n2.respiratory_rate_points(pick("respiratory_rate")),
        "spo2": n2.spo2_points(
            pick("spo2"), ctx.on_oxygen[:, None, None], ctx.scale2[:, None, None]
        ),
        "systolic_bp": n2.systolic_bp_points(pick("systolic_bp")),
        "temperature": np.maximum(
            n2.temperature_points(q("temperature", up)),
            n2.temperature_points(q("temperature", down)),
        ),
    }
    total = (
        points["respiratory_rate"].astype(np.int16)
        + points["spo2"]
        + points["systolic_bp"]
        + points["heart_rate"]
        + points["temperature"]
    )
    scores = (total + fixed[:, None, None]).astype(np.int16)  # [N, D, level]
    worst = np.maximum.accumulate(scores, axis=1)  # worst step so far
    steps = np.asarray(spec.horizon_steps) - 1
    n_v = len(_VITALS)
    out = np.zeros((quantiles.shape[0], len(steps), len(FORECAST_FEATURES)))
    out[..., 0] = 1.0
    out[..., 1] = ctx.news2_now[:, None] / 10.0
    out[..., 2:5] = worst[:, steps, :] / 10.0
    lo80, hi80 = _level(spec, 0.1), _level(spec, 0.9)
    for j, name in enumerate(_VITALS):
        last = ctx.last_obs[:, ti[name], None]
        fc = quantiles[:, ti[name], steps, med]  # [N, H]
        scale = spec.center_scale(name)[1]
        out[..., 5 + j] = np.where(np.isfinite(last), (fc - last) / scale, 0.0)
        # Which vital drives the adverse forecast (its worst points so far, of 3), and how
        # unsure the network is about it (the 80 % interval's width at the horizon).
        adverse = np.maximum.accumulate(points[name][..., 1], axis=1)  # [N, D]
        out[..., 5 + n_v + j] = adverse[:, steps] / 3.0
        width = quantiles[:, ti[name], steps, hi80] - quantiles[:, ti[name], steps, lo80]
        out[..., 5 + 2 * n_v + j] = width / scale
    return out


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
        low, high = np.quantile(pb, [0.1, 0.9], axis=-1)
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
