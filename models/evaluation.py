"""Evaluation on a held-out cohort: forecasts, risk, alerts, lead time, utility, subgroups.

Definitions (also in docs/forecasting.md "Evaluation"):

- Forecast error: MAE of the median forecast per target and horizon on observed steps, against
  persistence (the last observed step value), on the windows where both exist; the forecast is
  the anchored one the runtime serves (``models.anchor``), with the network's own median
  alongside (``network``). Interval
  coverage: the share of observed steps inside the 10-90 % (nominal 80 %) and 2-98 % (96 %)
  quantiles.
- Deterioration (``models.outcomes``): AUROC / AUPRC at 6 h and 12 h over origins before each
  patient's first deterioration, for the TFT risk, the persistence-based risk and NEWS2 (the
  score, and the binary NEWS2 >= 5 and >= 7); the TFT's AUROC minus NEWS2's and minus the
  persistence risk's, each with a 95 % interval from a patient-level bootstrap (1,000
  resamples of whole patients: a patient's windows are not independent).
- Alerting at a matched rate: NEWS2 >= 5 sets the alert rate (share of scored origins that
  alert); each risk is thresholded to alert at the same rate. Lead time: event time minus the
  first alerting origin in the 24 h before it; median over deteriorations that were alerted.
  Alerts per patient-day count alert onsets (an alerting origin after a silent one).
- Utility: PhysioNet/CinC 2019 on hourly origins (+1 from 12 h to 6 h before the event,
  rising linearly; falling to 0 at 3 h after; missing costs up to -2; false alarms -0.05),
  normalised as (U - U_no_alarms) / (U_best - U_no_alarms).
- Every headline metric is repeated by subgroup (age band, sex, comorbidity).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from models import metrics as mx
from models import risk as risk_mod
from models.dataset import Windows, build_windows
from models.outcomes import NEVER
from models.schema import COMORBIDITIES, Dataset

F = npt.NDArray[np.float64]
HOUR = 3_600_000


def _lvl(spec: Any, q: float) -> int:
    return int(np.argmin(np.abs(np.asarray(spec.quantiles) - q)))


def forecast_quality(
    q: np.ndarray, w: Windows, spec: Any, network: np.ndarray | None = None
) -> dict[str, Any]:
    """MAE per target and horizon (TFT median vs persistence) and interval coverage.

    ``network``: the network's quantiles before anchoring, reported next to ``q``'s MAE.
    """
    med, lo80, hi80 = _lvl(spec, 0.5), _lvl(spec, 0.1), _lvl(spec, 0.9)
    lo96, hi96 = _lvl(spec, 0.02), _lvl(spec, 0.98)
    out: dict[str, Any] = {"mae": {}, "coverage": {}}
    beats = True
    cov80_all: list[np.ndarray] = []
    cov96_all: list[np.ndarray] = []
    for k, t in enumerate(spec.targets):
        actual = w.dec_targets[:, :, k]  # [N, D]
        last = w.last_obs[:, k]
        has = np.isfinite(last)
        if not has.any() or not np.isfinite(actual[has]).any():
            continue
        tft = mx.mae_by_step(q[has, k, :, med], actual[has])
        per = mx.mae_by_step(np.broadcast_to(last[has, None], actual[has].shape), actual[has])
        net = None if network is None else mx.mae_by_step(network[has, k, :, med], actual[has])
        rows = {}
        for h, steps in zip(spec.risk_horizons_h, spec.horizon_steps, strict=True):
            a, b = float(tft[steps - 1]), float(per[steps - 1])
            rows[f"{h:g}h"] = {"tft": a, "persistence": b}
            if net is not None:
                rows[f"{h:g}h"]["network"] = float(net[steps - 1])
            if math.isfinite(a) and math.isfinite(b) and a >= b:
                beats = False
        out["mae"][t] = rows
        ok = np.isfinite(actual)
        in80 = (actual >= q[:, k, :, lo80]) & (actual <= q[:, k, :, hi80])
        in96 = (actual >= q[:, k, :, lo96]) & (actual <= q[:, k, :, hi96])
        out["coverage"][t] = {"80": float(in80[ok].mean()), "96": float(in96[ok].mean())}
        cov80_all.append(in80[ok])
        cov96_all.append(in96[ok])
    out["coverage_all"] = {
        "80": float(np.concatenate(cov80_all).mean()) if cov80_all else math.nan,
        "96": float(np.concatenate(cov96_all).mean()) if cov96_all else math.nan,
    }
    out["tft_beats_persistence_everywhere"] = beats
    return out


def _gain(y: np.ndarray, s: np.ndarray, other: np.ndarray, patient: np.ndarray) -> dict[str, Any]:
    """AUROC of ``s`` minus ``other``'s, with its patient-bootstrap interval."""
    ok = np.isfinite(y)
    return mx.auroc_difference(y[ok] > 0.5, s[ok], other[ok], patient[ok])


def _ranked(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(y)
    return {
        "auroc": mx.auroc(y[ok] > 0.5, s[ok]),
        "auprc": mx.auprc(y[ok] > 0.5, s[ok]),
        "n": int(ok.sum()),
        "positives": int((y[ok] > 0.5).sum()),
    }


def risk_designs(
    q: np.ndarray,
    w: Windows,
    scored: np.ndarray,
    spec: Any,
    *,
    training_cohort: np.ndarray | None = None,
    horizons_h: tuple[float, ...] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Cross-fitted AUROC by horizon of each candidate risk design on the ``scored`` rows.

    The patients of the ``scored`` rows (those the network never trained on: validation,
    calibration and any risk cohort) are split into ``folds``; each fold is scored by heads
    fitted on every other eligible window of ``w`` (training patients included), and the
    folds' scores are pooled. ``training_cohort`` marks the rows of the cohort the network was
    trained on (default: every row); the designs "training cohort only" fit on those rows
    alone, which is what a head learns without the risk cohort. Candidates: the shipped head
    (forecast + history features), the previous feature set (without the per-vital forecast
    features), the forecast features alone, the shipped head on a persistence forecast (the
    baseline), the history alone (current NEWS2 and history, no forecast), and the current
    NEWS2. ``_scored`` says how many patients and deteriorations were scored. Only
    ``horizons_h`` are compared (default: 6 h and 12 h, those the issue's targets name, where
    the spec has them): with a risk cohort each fit reads ~100k windows, and every horizon more
    costs the training command ~25 s.
    """
    ok = w.eligible
    we, qe, sc = w.take(ok), q[ok], scored[ok]
    if horizons_h is None:
        wanted = tuple(h for h in (6, 12) if h in spec.risk_horizons_h)
        horizons_h = wanted or tuple(spec.risk_horizons_h)
    cols = [list(spec.risk_horizons_h).index(h) for h in horizons_h]
    labels = we.labels[:, cols]
    cohort = np.ones(ok.sum(), bool) if training_cohort is None else training_cohort[ok]
    ctx = risk_mod.RiskContext.of(we, spec)
    n_fc = len(risk_mod.FORECAST_FEATURES)
    tft = risk_mod.features(qe, ctx, spec)[:, cols]
    pers = risk_mod.features(risk_mod.persistence_quantiles(ctx, spec), ctx, spec)[:, cols]
    no_forecast = [0, 1, *range(n_fc, tft.shape[-1])]  # bias, NEWS2 now, history
    per_vital = set(risk_mod.VITAL_FORECAST_FEATURES)
    previous = [i for i, n in enumerate(risk_mod.FEATURES) if n not in per_vital]
    cands = {  # name: (features, fitted on the training cohort only)
        "tft_quantiles + history (shipped)": (tft, False),
        "previous features (no per-vital forecast)": (tft[..., previous], False),
        "tft_quantiles only": (tft[..., :n_fc], False),
        "persistence + history (baseline)": (pers, False),
        "history only (no forecast)": (tft[..., no_forecast], False),
    }
    if not cohort.all():  # a risk cohort is there: what it adds
        cands["tft_quantiles + history, training cohort only"] = (tft, True)
        cands["previous features, training cohort only (previous design)"] = (
            tft[..., previous],
            True,
        )
    patients = np.unique(we.patient[sc])
    fold_of = np.full(len(we.patient_ids), -1)
    fold_of[patients] = np.random.default_rng(seed).permutation(patients.size) % folds
    fold = fold_of[we.patient]
    scores = {name: np.full(labels.shape, np.nan) for name in cands}
    for f in range(folds):
        test = sc & (fold == f)
        fit_all = fold != f  # unscored (training) patients are in no fold: always fitted on
        if not test.any() or not fit_all.any():
            continue
        for name, (feats, training_only) in cands.items():
            fit_rows = fit_all & cohort if training_only else fit_all
            head = risk_mod.fit(
                feats[fit_rows], labels[fit_rows], we.patient[fit_rows], spec, n_boot=0
            )
            scores[name][test] = head.probability(feats[test])
    scores["news2_now"] = np.repeat(we.news2_now[:, None].astype(float), len(cols), 1)
    out: dict[str, Any] = {}
    for name, s in scores.items():
        out[name] = {}
        for j, h in enumerate(horizons_h):
            keep = sc & np.isfinite(labels[:, j]) & np.isfinite(s[:, j])
            out[name][f"{h:g}h"] = mx.auroc(labels[keep, j] > 0.5, s[keep, j])
    events = np.unique(we.patient[sc & (we.event_ms != NEVER)])
    out["_scored"] = {"patients": int(patients.size), "deteriorations": int(events.size)}
    return out


def _alerts(w: Windows, alert: np.ndarray) -> dict[str, Any]:
    """Lead times and alert onsets for boolean alerts on (eligible, time-ordered) windows."""
    order = np.lexsort((w.origin_ms, w.patient))
    p, t, a = w.patient[order], w.origin_ms[order], alert[order]
    prev_same = np.r_[False, p[1:] == p[:-1]]
    prev_alert = np.r_[False, a[:-1]] & prev_same
    onsets = a & ~prev_alert
    days = 0.0
    for pid in np.unique(p):
        tt = t[p == pid]
        days += (tt.max() - tt.min() + 1800_000) / (24 * HOUR)
    leads: list[float] = []
    caught = 0
    ev = w.event_ms[order]
    events = np.unique(p[ev != NEVER])
    for pid in events:
        m = p == pid
        e = int(ev[m][0])
        window = m & a & (t >= e - 24 * HOUR) & (t < e)
        if window.any():
            caught += 1
            leads.append((e - int(t[window].min())) / HOUR)
    return {
        "alert_rate": float(a.mean()) if a.size else math.nan,
        "alerts_per_patient_day": float(onsets.sum() / days) if days else math.nan,
        "events": int(events.size),
        "events_alerted": caught,
        "median_lead_h": float(np.median(leads)) if leads else math.nan,
        "lead_times_h": [round(x, 2) for x in leads],
    }


def utility(w: Windows, alert_all: np.ndarray) -> float:
    """PhysioNet 2019 normalised utility on hourly origins (alerts given for *all* windows)."""
    dt_early, dt_opt, dt_late = -12.0, -6.0, 3.0
    u_fp, min_fn, max_tp = -0.05, -2.0, 1.0
    m1 = max_tp / (dt_opt - dt_early)
    b1 = -m1 * dt_early
    m2 = -max_tp / (dt_late - dt_opt)
    b2 = -m2 * dt_late
    m3 = min_fn / (dt_late - dt_opt)
    b3 = -m3 * dt_opt
    hourly = (w.origin_ms % HOUR) == 0
    septic = w.event_ms != NEVER
    rel = np.where(septic, (w.origin_ms - w.event_ms) / HOUR, -np.inf)
    keep = hourly & (~septic | (rel <= dt_late))
    rel, sep, pred = rel[keep], septic[keep], alert_all[keep]

    def u(pr: np.ndarray) -> float:
        tp = np.where(rel <= dt_opt, np.maximum(m1 * rel + b1, u_fp), m2 * rel + b2)
        fn = np.where(rel <= dt_opt, 0.0, m3 * rel + b3)
        val = np.where(sep, np.where(pr, tp, fn), np.where(pr, u_fp, 0.0))
        return float(val.sum())

    best = sep & (rel >= dt_early) & (rel <= dt_late)
    u_best, u_none, u_obs = u(best), u(np.zeros_like(pred)), u(pred)
    return (u_obs - u_none) / (u_best - u_none) if u_best != u_none else math.nan


def _threshold_for_rate(score: np.ndarray, rate: float) -> float:
    if score.size == 0 or not math.isfinite(rate) or rate <= 0:
        return math.inf
    return float(np.quantile(score, 1 - rate, method="higher"))


def _subgroups(ds: Dataset, w: Windows) -> dict[str, np.ndarray]:
    st = ds.static.set_index("patient_id").loc[list(w.patient_ids)]
    age = st["age"].to_numpy(float)[w.patient]
    groups = {
        "age<65": age < 65,
        "age65-79": (age >= 65) & (age < 80),
        "age>=80": age >= 80,
        "female": (st["sex"].to_numpy() == "female")[w.patient],
        "male": (st["sex"].to_numpy() == "male")[w.patient],
    }
    chronic = [c for c in COMORBIDITIES if c != "hypercapnic_respiratory_failure"]
    for c in chronic:
        groups[c] = st[c].to_numpy(bool)[w.patient]
    groups["no_comorbidity"] = ~np.any([groups[c] for c in chronic], axis=0)
    return groups


def evaluate(
    forecaster: Any,
    ds: Dataset,
    *,
    persistence_head: risk_mod.RiskHead | None = None,
    name: str = "held-out",
    samples: int = 4,
) -> dict[str, Any]:
    """Every metric of the module docstring for one cohort; JSON-ready (NaN -> None)."""
    from models.training import predict_quantiles

    spec = forecaster.spec
    w = build_windows(ds, spec)
    q_net = predict_quantiles(forecaster, w, raw=True)
    q = forecaster.calibrate(q_net, w.last_obs)
    ctx = risk_mod.RiskContext.of(w, spec)
    tft_p = forecaster.risk_head.predict(risk_mod.features(q, ctx, spec))[0]
    pers_q = risk_mod.persistence_quantiles(ctx, spec)
    if persistence_head is None:
        pers_head_data = forecaster.checkpoint.metadata.get("risk_persistence")
        persistence_head = risk_mod.RiskHead.from_dict(pers_head_data) if pers_head_data else None
    pers_p = (
        persistence_head.probability(risk_mod.features(pers_q, ctx, spec))
        if persistence_head is not None
        else np.full_like(tft_p, np.nan)
    )
    news2 = w.news2_now.astype(float)
    hs = list(spec.risk_horizons_h)
    result: dict[str, Any] = {
        "cohort": name,
        "patients": len(w.patient_ids),
        "windows": w.n,
        "forecast": forecast_quality(q, w, spec, network=q_net),
    }
    el = w.eligible
    det: dict[str, Any] = {}
    for h in (6, 12):
        if h not in hs:
            continue
        j = hs.index(h)
        y = w.labels[el, j]
        det[f"{h}h"] = {
            "tft": _ranked(y, tft_p[el, j]),
            "persistence": _ranked(y, pers_p[el, j]),
            "news2": _ranked(y, news2[el]),
            "news2>=5": _ranked(y, (news2[el] >= 5).astype(float)),
            "news2>=7": _ranked(y, (news2[el] >= 7).astype(float)),
            "calibration_tft": mx.calibration(y[np.isfinite(y)], tft_p[el, j][np.isfinite(y)]),
            "calibration_persistence": mx.calibration(
                y[np.isfinite(y)], pers_p[el, j][np.isfinite(y)]
            ),
            "auroc_difference": {
                "tft_minus_news2": _gain(y, tft_p[el, j], news2[el], w.patient[el]),
                "tft_minus_persistence": _gain(y, tft_p[el, j], pers_p[el, j], w.patient[el]),
            },
        }
    result["deterioration"] = det
    # alerting at the NEWS2 >= 5 rate
    we = w.take(el)
    rate = float((news2[el] >= 5).mean()) if el.any() else math.nan
    j6 = hs.index(6) if 6 in hs else len(hs) // 2
    thr_tft = _threshold_for_rate(tft_p[el, j6], rate)
    thr_pers = _threshold_for_rate(pers_p[el, j6], rate)
    alerting = {
        "matched_rate": rate,
        "thresholds": {"tft_6h": thr_tft, "persistence_6h": thr_pers},
        "news2>=5": _alerts(we, news2[el] >= 5),
        "news2>=7": _alerts(we, news2[el] >= 7),
        "tft_6h": _alerts(we, tft_p[el, j6] >= thr_tft),
        "persistence_6h": _alerts(we, pers_p[el, j6] >= thr_pers),
    }
    alerting["utility"] = {
        "news2>=5": utility(w, news2 >= 5),
        "news2>=7": utility(w, news2 >= 7),
        "tft_6h": utility(w, tft_p[:, j6] >= thr_tft),
        "persistence_6h": utility(w, pers_p[:, j6] >= thr_pers),
    }
    result["alerting"] = alerting
    # subgroups
    subs: dict[str, Any] = {}
    for gname, gmask in _subgroups(ds, w).items():
        if not gmask.any():
            continue
        gw = w.take(gmask)
        fq = forecast_quality(q[gmask], gw, spec)
        gel = gmask & el
        y6 = w.labels[gel, j6]
        subs[gname] = {
            "patients": int(np.unique(w.patient[gmask]).size),
            "windows": int(gmask.sum()),
            "mae_6h": {t: v.get("6h") for t, v in fq["mae"].items()},
            "coverage_80": fq["coverage_all"]["80"],
            "auroc_6h": {
                "tft": _ranked(y6, tft_p[gel, j6])["auroc"],
                "persistence": _ranked(y6, pers_p[gel, j6])["auroc"],
                "news2": _ranked(y6, news2[gel])["auroc"],
            },
            "calibration_6h_ece": mx.calibration(
                y6[np.isfinite(y6)], tft_p[gel, j6][np.isfinite(y6)]
            )["ece"],
            "alerts_per_patient_day_tft": _alerts(
                gw.take(gw.eligible), (tft_p[gmask, j6] >= thr_tft)[gw.eligible]
            )["alerts_per_patient_day"],
        }
    result["subgroups"] = subs
    result["samples"] = _fan_samples(w, q, tft_p, spec, samples)
    result["targets"] = _targets(result)
    return mx.nan_to_none(result)


def _fan_samples(w: Windows, q: np.ndarray, p: np.ndarray, spec: Any, k: int) -> list[Any]:
    """A few forecasts to draw: patients with an event, ~6 h before it, and one stable."""
    out = []
    with_event = [i for i in np.unique(w.patient) if (w.event_ms[w.patient == i] != NEVER).any()]
    stable = [i for i in np.unique(w.patient) if i not in set(with_event)]
    picks = with_event[: k - 1] + stable[:1]
    for pid in picks:
        rows = np.nonzero(w.patient == pid)[0]
        ev = int(w.event_ms[rows[0]])
        target_t = ev - 6 * HOUR if ev != NEVER else int(np.median(w.origin_ms[rows]))
        r = rows[np.argmin(np.abs(w.origin_ms[rows] - target_t))]
        hist = rows[(w.origin_ms[rows] <= w.origin_ms[r])]
        out.append(
            {
                "patient_id": w.patient_ids[pid],
                "origin_ms": int(w.origin_ms[r]),
                "event_ms": None if ev == NEVER else ev,
                "targets": list(spec.targets),
                "quantiles": np.round(q[r], 2).tolist(),
                "actual": np.round(w.dec_targets[r].T, 2).tolist(),
                "history": np.round(w.enc_targets[r].T, 2).tolist(),
                "risk": np.round(p[r], 4).tolist(),
                "history_risk_6h": np.round(p[hist, 3 if p.shape[1] > 3 else 0], 4).tolist(),
                "history_origins_ms": w.origin_ms[hist].tolist(),
            }
        )
    return out


def _targets(r: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the measured values and whether it is met."""
    fq = r["forecast"]
    cov80 = fq["coverage_all"]["80"]
    det6 = r["deterioration"].get("6h", {})
    a_tft = det6.get("tft", {}).get("auroc", math.nan)
    a_n2 = det6.get("news2", {}).get("auroc", math.nan)
    vs_n2 = det6.get("auroc_difference", {}).get("tft_minus_news2", {})
    lead_tft = r["alerting"]["tft_6h"]["median_lead_h"]
    lead_n2 = r["alerting"]["news2>=5"]["median_lead_h"]

    def ok(x: bool) -> bool:
        return bool(x)

    return {
        "tft_beats_persistence_mae_every_horizon": fq["tft_beats_persistence_everywhere"],
        "coverage_80_within_75_85": {"value": cov80, "met": ok(0.75 <= cov80 <= 0.85)},
        "auroc_6h_at_least_news2_plus_0.05": {
            "tft": a_tft,
            "news2": a_n2,
            "difference_ci95": vs_n2.get("ci95"),
            "met": ok(math.isfinite(a_tft) and math.isfinite(a_n2) and a_tft >= a_n2 + 0.05),
        },
        "longer_median_lead_time_at_same_alert_rate": {
            "tft_h": lead_tft,
            "news2>=5_h": lead_n2,
            "met": ok(
                math.isfinite(lead_tft) and (not math.isfinite(lead_n2) or lead_tft > lead_n2)
            ),
        },
    }
