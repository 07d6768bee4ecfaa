"""Statistics for trial analysis, in numpy only: proportions, risk ratios, Kaplan-Meier, Cox.

- ``risk_difference``: unpaired - Newcombe's hybrid score interval (method 10; Wilson limits of
  each proportion), with the pooled two-proportion z test; paired - the mean of within-twin
  differences with its standard error (Wald).
- ``relative_risk``: Katz log interval (0.5 added to every cell when one has no events);
  paired - the delta method with the within-twin covariance.
- ``nnt``: 1 / |RD| with Altman's interval (NNTB to infinity to NNTH when RD's CI spans 0).
- ``kaplan_meier``: product-limit estimate with Greenwood variance, log(-log) interval.
- ``cox``: proportional hazards by Newton-Raphson on the Breslow partial likelihood, optionally
  stratified (each stratum its own baseline) and with a cluster-robust sandwich variance (Lin
  and Wei 1989: the same twin under two arms); Wald intervals and the score test.
- ``logrank``: the (stratified) log-rank test with the hypergeometric variance.
- ``poisson_rate``: a rate with Byar's interval.

Each function returns plain numbers or a small frozen ``Estimate``; nothing here knows trials.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
_N = NormalDist()


def z_for(alpha: float) -> float:
    return _N.inv_cdf(1 - alpha / 2)


def p_normal(z: float) -> float:
    """Two-sided p-value of a standard normal statistic."""
    return math.erfc(abs(z) / math.sqrt(2)) if math.isfinite(z) else (0.0 if z == z else math.nan)


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for a chi-square with ``df`` degrees of freedom (regularised incomplete gamma)."""
    if not math.isfinite(x):
        return math.nan if x != x else 0.0
    if x <= 0:
        return 1.0
    if df == 1:
        return math.erfc(math.sqrt(x / 2))
    if df == 2:
        return math.exp(-x / 2)
    a, y = df / 2.0, x / 2.0
    if y < a + 1:  # series for the lower function
        term = total = 1.0 / a
        k = a
        for _ in range(500):
            k += 1
            term *= y / k
            total += term
            if term < total * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-y + a * math.log(y) - math.lgamma(a)))
    # Continued fraction for the upper function (Lentz).
    tiny = 1e-300
    b = y + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(-y + a * math.log(y) - math.lgamma(a)) * h


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float
    se: float = math.nan
    p: float = math.nan

    def to_dict(self) -> dict[str, float | None]:
        return {k: _num(v) for k, v in asdict(self).items()}

    def excludes(self, null: float) -> bool:
        return bool(self.lo > null or self.hi < null)


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def wilson(k: float, n: float, z: float) -> tuple[float, float]:
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if k <= 0 else max(0.0, mid - half)
    hi = 1.0 if k >= n else min(1.0, mid + half)
    return lo, hi


def proportion(y: npt.ArrayLike, alpha: float = 0.05) -> Estimate:
    a = np.asarray(y, dtype=bool)
    n, k = a.size, int(a.sum())
    lo, hi = wilson(k, n, z_for(alpha))
    p = k / n if n else math.nan
    return Estimate(p, lo, hi, math.sqrt(p * (1 - p) / n) if n else math.nan)


def risk_difference(
    y1: npt.ArrayLike, y0: npt.ArrayLike, *, paired: bool = False, alpha: float = 0.05
) -> Estimate:
    """Risk in group 1 minus risk in group 0 (``paired``: the same twins, in the same order)."""
    a, b = np.asarray(y1, dtype=np.float64), np.asarray(y0, dtype=np.float64)
    z = z_for(alpha)
    if paired:
        if a.shape != b.shape:
            raise ValueError("paired outcomes must have the same length")
        d = a - b
        n = d.size
        mean = float(d.mean()) if n else math.nan
        se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        if se == 0:
            return Estimate(mean, mean, mean, 0.0, 1.0 if mean == 0 else 0.0)
        return Estimate(mean, mean - z * se, mean + z * se, se, p_normal(mean / se))
    n1, n0 = a.size, b.size
    k1, k0 = float(a.sum()), float(b.sum())
    if n1 == 0 or n0 == 0:
        return Estimate(math.nan, math.nan, math.nan)
    p1, p0 = k1 / n1, k0 / n0
    diff = p1 - p0
    l1, u1 = wilson(k1, n1, z)
    l0, u0 = wilson(k0, n0, z)
    lo = diff - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    hi = diff + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    pooled = (k1 + k0) / (n1 + n0)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    p = p_normal(diff / se0) if se0 > 0 else 1.0
    return Estimate(diff, lo, hi, se, p)


def relative_risk(
    y1: npt.ArrayLike, y0: npt.ArrayLike, *, paired: bool = False, alpha: float = 0.05
) -> Estimate:
    a, b = np.asarray(y1, dtype=np.float64), np.asarray(y0, dtype=np.float64)
    z = z_for(alpha)
    n1, n0 = a.size, b.size
    k1, k0 = float(a.sum()), float(b.sum())
    if n1 == 0 or n0 == 0 or (k1 == 0 and k0 == 0):
        return Estimate(math.nan, math.nan, math.nan)
    if paired:
        p1, p0 = k1 / n1, k0 / n0
        if p1 == 0 or p0 == 0:
            return Estimate(p1 / p0 if p0 else math.inf, math.nan, math.nan)
        cov = (float((a * b).mean()) - p1 * p0) / n1
        var = p1 * (1 - p1) / n1 / p1**2 + p0 * (1 - p0) / n0 / p0**2 - 2 * cov / (p1 * p0)
        log_rr = math.log(p1 / p0)
    else:
        c = 0.5 if k1 == 0 or k0 == 0 else 0.0  # Haldane: 0.5 added to every cell
        a1, a0, m1, m0 = k1 + c, k0 + c, n1 + c, n0 + c
        log_rr = math.log((a1 / m1) / (a0 / m0))
        var = 1 / a1 - 1 / m1 + 1 / a0 - 1 / m0
    se = math.sqrt(max(var, 0.0))
    if se == 0:
        return Estimate(math.exp(log_rr), math.exp(log_rr), math.exp(log_rr), 0.0)
    return Estimate(
        math.exp(log_rr),
        math.exp(log_rr - z * se),
        math.exp(log_rr + z * se),
        se,
        p_normal(log_rr / se),
    )


def nnt(rd: Estimate) -> dict[str, Any]:
    """Number needed to treat from a risk difference of a *harmful* event (negative: benefit).

    NNTB: treated twins per event prevented; NNTH: per event caused. When the interval of RD
    includes 0 the interval of NNT runs through infinity (Altman, BMJ 1998).
    """
    d, lo, hi = rd.value, rd.lo, rd.hi
    if not math.isfinite(d):
        return {"value": None, "kind": None, "text": "not estimable"}
    kind = "benefit" if d < 0 else "harm"
    value = math.inf if d == 0 else 1 / abs(d)

    def label(x: float) -> str:
        if x == 0 or not math.isfinite(x):
            return "infinity"
        return f"NNT{'B' if x < 0 else 'H'} {1 / abs(x):.1f}"

    if not (math.isfinite(lo) and math.isfinite(hi)):
        text = f"NNT{'B' if d < 0 else 'H'} {value:.1f}"
        return {"value": _num(value), "kind": kind, "lo": None, "hi": None, "text": text}
    if lo == hi == d == 0:
        return {"value": None, "kind": None, "text": "no difference in any twin"}
    spans = lo < 0 < hi
    if spans:
        ci = f"{label(lo)} to infinity to {label(hi)}"
        bounds: tuple[float | None, float | None] = (None, None)
    else:
        a, b = sorted((1 / abs(lo) if lo else math.inf, 1 / abs(hi) if hi else math.inf))
        ci = f"{label(lo if abs(lo) > abs(hi) else hi)} to {label(hi if abs(lo) > abs(hi) else lo)}"
        bounds = (_num(a), _num(b))
    head = "no difference" if d == 0 else f"NNT{'B' if d < 0 else 'H'} {value:.1f}"
    return {
        "value": _num(value),
        "kind": kind,
        "lo": bounds[0],
        "hi": bounds[1],
        "spans_infinity": spans,
        "text": f"{head} ({ci})",
    }


# ---- survival -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KaplanMeier:
    time: F64  # 0 and every distinct event time
    survival: F64
    lo: F64
    hi: F64
    at_risk: npt.NDArray[np.int64]
    events: npt.NDArray[np.int64]

    def at(self, t: float) -> float:
        k = int(np.searchsorted(self.time, t, side="right")) - 1
        return float(self.survival[max(k, 0)])

    def median(self) -> Estimate:
        def first_below(curve: F64) -> float:
            hit = np.nonzero(curve <= 0.5)[0]
            return float(self.time[hit[0]]) if hit.size else math.nan

        return Estimate(first_below(self.survival), first_below(self.lo), first_below(self.hi))


def kaplan_meier(time: npt.ArrayLike, event: npt.ArrayLike, alpha: float = 0.05) -> KaplanMeier:
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event, dtype=bool)
    z = z_for(alpha)
    uniq = np.unique(t[e])
    order = np.sort(t)
    at_risk = t.size - np.searchsorted(order, uniq, side="left")
    d = np.bincount(np.searchsorted(uniq, t[e]), minlength=uniq.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.cumprod(1 - d / at_risk)
        green = np.cumsum(d / (at_risk * (at_risk - d)))
        log_s = np.log(s)
        se = np.sqrt(green) / np.abs(log_s)
        lo = np.exp(-np.exp(np.log(-log_s) + z * se))
        hi = np.exp(-np.exp(np.log(-log_s) - z * se))
    lo = np.where(s > 0, np.where(s < 1, lo, 1.0), 0.0)
    hi = np.where(s > 0, np.where(s < 1, hi, 1.0), 0.0)
    return KaplanMeier(
        time=np.r_[0.0, uniq],
        survival=np.r_[1.0, s],
        lo=np.r_[1.0, np.nan_to_num(lo, nan=0.0)],
        hi=np.r_[1.0, np.nan_to_num(hi, nan=1.0)],
        at_risk=np.r_[t.size, at_risk].astype(np.int64),
        events=np.r_[0, d].astype(np.int64),
    )


@dataclass(frozen=True)
class CoxFit:
    beta: F64
    cov: F64
    loglik: float
    loglik0: float
    score_chi2: float  # score test of beta = 0 (log-rank for a single group indicator)
    converged: bool
    n: int
    events: int
    robust: bool = False  # cov is the cluster-robust sandwich

    @property
    def se(self) -> F64:
        return np.sqrt(np.diag(self.cov))


@dataclass(frozen=True)
class _Sorted:
    """Rows sorted by stratum, then time descending, with the index bookkeeping of risk sets."""

    x: F64
    e: npt.NDArray[np.bool_]
    order: npt.NDArray[np.int64]
    first: npt.NDArray[np.int64]  # first index of the row's stratum
    last: npt.NDArray[np.int64]  # last index of the row's (stratum, time) tie group
    group_first: npt.NDArray[np.int64]  # first index of the row's tie group
    stratum_last: npt.NDArray[np.int64]  # last index of the row's stratum


def _sorted_terms(t: F64, e: npt.NDArray[np.bool_], x: F64, s: npt.NDArray[np.int64]) -> _Sorted:
    order = np.lexsort((-t, s))
    t, e, x, s = t[order], e[order], x[order], s[order]
    n = t.size
    idx = np.arange(n)
    new_stratum = np.r_[True, s[1:] != s[:-1]]
    new_group = new_stratum | np.r_[True, t[1:] != t[:-1]]
    gid = np.cumsum(new_group) - 1
    starts = np.nonzero(new_group)[0]
    group_end = np.r_[starts[1:] - 1, n - 1]
    sid = np.cumsum(new_stratum) - 1
    s_starts = np.nonzero(new_stratum)[0]
    s_end = np.r_[s_starts[1:] - 1, n - 1]
    return _Sorted(
        x=x,
        e=e,
        order=order,
        first=np.maximum.accumulate(np.where(new_stratum, idx, 0)),
        last=group_end[gid],
        group_first=starts[gid],
        stratum_last=s_end[sid],
    )


def _within(v: F64, first: npt.NDArray[np.int64], last: npt.NDArray[np.int64]) -> F64:
    """Sum of ``v`` from the stratum start to each tie group's end (the risk set)."""
    c = np.cumsum(v, axis=0)
    base = np.where(
        (first > 0).reshape((-1,) + (1,) * (v.ndim - 1)), c[np.maximum(first - 1, 0)], 0.0
    )
    return np.asarray(c[last] - base[last])


def _cox_step(
    beta: F64,
    x: F64,
    e: npt.NDArray[np.bool_],
    first: npt.NDArray[np.int64],
    last: npt.NDArray[np.int64],
) -> tuple[float, F64, F64]:
    eta = x @ beta
    shift = float(eta.max()) if eta.size else 0.0
    w = np.exp(eta - shift)
    s0 = _within(w, first, last)
    s1 = _within(w[:, None] * x, first, last)
    s2 = _within(w[:, None, None] * x[:, :, None] * x[:, None, :], first, last)
    ev = np.nonzero(e)[0]
    mean = s1[ev] / s0[ev, None]
    loglik = float(np.sum(eta[ev] - shift - np.log(s0[ev])))
    score = np.sum(x[ev] - mean, axis=0)
    info = np.sum(s2[ev] / s0[ev, None, None] - mean[:, :, None] * mean[:, None, :], axis=0)
    return loglik, score, info


def cox(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    x: npt.ArrayLike,
    strata: npt.ArrayLike | None = None,
    *,
    cluster: npt.ArrayLike | None = None,
    max_iter: int = 60,
) -> CoxFit:
    """Cox proportional hazards (Breslow ties), optionally stratified; ``x`` is ``[n, p]``.

    ``cluster``: rows sharing a label are not independent (the same twin under two arms); the
    covariance is then the robust sandwich of Lin and Wei (1989) summed over clusters.
    """
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event, dtype=bool)
    xx = np.asarray(x, dtype=np.float64)
    if xx.ndim == 1:
        xx = xx[:, None]
    s = (
        np.zeros(t.size, np.int64)
        if strata is None
        else np.unique(np.asarray(strata), return_inverse=True)[1].astype(np.int64)
    )
    srt = _sorted_terms(t, e, xx, s)
    xs, es, last, first = srt.x, srt.e, srt.last, srt.first
    p = xx.shape[1]
    beta = np.zeros(p)
    ll0, score0, info0 = _cox_step(beta, xs, es, first, last)
    try:
        score_chi2 = float(score0 @ np.linalg.solve(info0, score0))
    except np.linalg.LinAlgError:
        score_chi2 = math.nan
    ll, score, info = ll0, score0, info0
    converged = False
    # Under monotone likelihood (no events in one group) beta runs off to infinity: stop there.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for _ in range(max_iter):
            try:
                step = np.linalg.solve(info, score)
            except np.linalg.LinAlgError:
                break
            factor = 1.0
            while True:
                cand = beta + factor * step
                ll_c, score_c, info_c = _cox_step(cand, xs, es, first, last)
                if (math.isfinite(ll_c) and ll_c >= ll - 1e-12) or factor < 1e-6:
                    break
                factor /= 2
            if not math.isfinite(ll_c):
                break
            change = ll_c - ll
            beta, ll, score, info = cand, ll_c, score_c, info_c
            if abs(change) < 1e-10 and np.max(np.abs(factor * step)) < 1e-7:
                converged = True
                break
            if np.any(np.abs(beta) > 15):
                break
    if np.any(np.abs(beta) > 15):
        converged = False  # monotone likelihood: no events in one group (HR 0 or infinity)
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov = np.full((p, p), np.nan)
    robust = False
    if cluster is not None and converged:
        resid = np.empty_like(xx)
        resid[srt.order] = _score_residuals(beta, srt)
        groups = np.unique(np.asarray(cluster), return_inverse=True)[1]
        per_cluster = np.zeros((int(groups.max()) + 1, p))
        np.add.at(per_cluster, groups, resid)
        cov = cov @ (per_cluster.T @ per_cluster) @ cov
        robust = True
    cov_f: F64 = cov.astype(np.float64)
    return CoxFit(beta, cov_f, ll, ll0, score_chi2, converged, int(t.size), int(e.sum()), robust)


def _score_residuals(beta: F64, srt: _Sorted) -> F64:
    """Per-row score residuals (Breslow), in sorted order: they sum to the score."""
    x, e = srt.x, srt.e
    eta = x @ beta
    w = np.exp(eta - float(eta.max()))
    s0 = _within(w, srt.first, srt.last)
    s1 = _within(w[:, None] * x, srt.first, srt.last)
    xbar = s1 / s0[:, None]
    ev = e.astype(np.float64)

    def tail(v: F64) -> F64:  # sum over rows of the stratum from each row's tie group on
        rc = np.concatenate([np.cumsum(v[::-1], axis=0)[::-1], np.zeros((1, *v.shape[1:]))])
        return np.asarray(rc[srt.group_first] - rc[srt.stratum_last + 1])

    a = tail(ev / s0)
    b = tail((ev / s0)[:, None] * xbar)
    return np.asarray(ev[:, None] * (x - xbar) - w[:, None] * (x * a[:, None] - b))


def hazard_ratio(fit: CoxFit, k: int = 0, alpha: float = 0.05) -> Estimate:
    """The hazard ratio of covariate ``k`` with its Wald interval and p-value."""
    if not fit.converged or fit.events == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, chi2_sf(fit.score_chi2, 1))
    b, se = float(fit.beta[k]), float(fit.se[k])
    z = z_for(alpha)
    return Estimate(math.exp(b), math.exp(b - z * se), math.exp(b + z * se), se, p_normal(b / se))


def poisson_rate(count: float, exposure: float, alpha: float = 0.05) -> Estimate:
    """Events per unit of exposure, Byar's approximation to the exact Poisson interval."""
    if exposure <= 0:
        return Estimate(math.nan, math.nan, math.nan)
    z = z_for(alpha)
    c = float(count)
    lo = 0.0 if c == 0 else c * (1 - 1 / (9 * c) - z / (3 * math.sqrt(c))) ** 3
    c1 = c + 1
    hi = c1 * (1 - 1 / (9 * c1) + z / (3 * math.sqrt(c1))) ** 3
    return Estimate(c / exposure, lo / exposure, hi / exposure, math.sqrt(c) / exposure)


def mean_difference(
    x1: npt.ArrayLike, x0: npt.ArrayLike, *, paired: bool = False, alpha: float = 0.05
) -> Estimate:
    a, b = np.asarray(x1, dtype=np.float64), np.asarray(x0, dtype=np.float64)
    z = z_for(alpha)
    if paired:
        d = a - b
        d = d[np.isfinite(d)]
        if d.size < 2:
            return Estimate(math.nan, math.nan, math.nan)
        m, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
    else:
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if a.size < 2 or b.size < 2:
            return Estimate(math.nan, math.nan, math.nan)
        m = float(a.mean() - b.mean())
        se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    if se == 0:
        return Estimate(m, m, m, 0.0, 1.0 if m == 0 else 0.0)
    return Estimate(m, m - z * se, m + z * se, se, p_normal(m / se))


def heterogeneity(estimates: list[Estimate]) -> float:
    """Cochran's Q test p-value that subgroup effects differ (NaN with fewer than two)."""
    ok = [e for e in estimates if math.isfinite(e.value) and math.isfinite(e.se) and e.se > 0]
    if len(ok) < 2:
        return math.nan
    w = np.array([1 / e.se**2 for e in ok])
    v = np.array([e.value for e in ok])
    pooled = float((w * v).sum() / w.sum())
    q = float((w * (v - pooled) ** 2).sum())
    return chi2_sf(q, len(ok) - 1)


def logrank(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    group: npt.ArrayLike,
    strata: npt.ArrayLike | None = None,
) -> tuple[float, float]:
    """(chi-square, p) of the (stratified) log-rank test of group 1 against group 0."""
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event, dtype=bool)
    g = np.asarray(group, dtype=bool)
    s = (
        np.zeros(t.size, np.int64)
        if strata is None
        else np.unique(np.asarray(strata), return_inverse=True)[1]
    )
    order = np.lexsort(
        (-t, s)
    )  # within each stratum, latest first: cumulative sums are at-risk counts
    t, e, g, s = t[order], e[order], g[order], s[order]
    n = t.size
    if n == 0 or not e.any():
        return 0.0, 1.0
    new_stratum = np.r_[True, s[1:] != s[:-1]]
    new_group = new_stratum | np.r_[True, t[1:] != t[:-1]]
    first = np.maximum.accumulate(np.where(new_stratum, np.arange(n), 0))
    starts = np.nonzero(new_group)[0]
    ends = np.r_[starts[1:] - 1, n - 1]

    def at_risk(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        c = np.cumsum(v)
        base = np.where(first > 0, c[np.maximum(first - 1, 0)], 0.0)
        return np.asarray((c - base)[ends])

    ones = np.ones(n)
    n_all = at_risk(ones)
    n_one = at_risk(g.astype(np.float64))
    d_all = np.add.reduceat(e.astype(np.float64), starts)
    d_one = np.add.reduceat((e & g).astype(np.float64), starts)
    expected = d_all * n_one / n_all
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(
            n_all > 1,
            d_all * (n_one / n_all) * (1 - n_one / n_all) * (n_all - d_all) / (n_all - 1),
            0.0,
        )
    v = float(var.sum())
    if v <= 0:
        return 0.0, 1.0
    chi2 = float((d_one.sum() - expected.sum()) ** 2 / v)
    return chi2, chi2_sf(chi2, 1)
