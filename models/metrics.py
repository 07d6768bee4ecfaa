"""Metric primitives on numpy arrays (no sklearn): ranking, calibration, forecast errors.

Conventions: ``y`` are 0/1 labels, ``s`` scores (higher = more likely positive); NaN labels
are dropped by the callers. Every function returns plain floats or lists (JSON-ready).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

A = npt.NDArray[Any]


def _rank(s: A) -> A:
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    return ranks


def auroc(y: A, s: A) -> float:
    y = np.asarray(y, bool)
    s = np.asarray(s, np.float64)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return math.nan
    r = _rank(s)
    return float((r[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


class _SortedScore:
    """One score's order and tie groups, so that its AUROC under any row weights costs two
    ``bincount``s: what a bootstrap over thousands of resamples needs."""

    def __init__(self, y: A, s: A) -> None:
        order = np.argsort(np.asarray(s, np.float64), kind="mergesort")
        ss = np.asarray(s, np.float64)[order]
        self.order = order
        self.pos = np.asarray(y, bool)[order]
        self.tie = np.r_[0, np.cumsum(ss[1:] != ss[:-1])]  # tie-group id per sorted row

    def auroc(self, w: A) -> float:
        """Mann-Whitney AUROC (ties count half) with row ``w``eights (resample counts)."""
        ws = np.asarray(w, np.float64)[self.order]
        groups = int(self.tie[-1]) + 1 if self.tie.size else 0
        p = np.bincount(self.tie, ws * self.pos, minlength=groups)
        n = np.bincount(self.tie, ws * ~self.pos, minlength=groups)
        total_p, total_n = float(p.sum()), float(n.sum())
        if total_p == 0 or total_n == 0:
            return math.nan
        below = np.cumsum(n) - n  # negatives scored strictly lower
        return float((p * (below + 0.5 * n)).sum() / (total_p * total_n))


def auroc_difference(
    y: A, a: A, b: A, groups: A, *, reps: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """AUROC(a) - AUROC(b) on the same rows, with a 95 % interval from a cluster bootstrap:
    whole ``groups`` (patients) are resampled with replacement, both scores on each resample,
    because one patient's windows are not independent of each other."""
    y = np.asarray(y, bool)
    sa, sb = _SortedScore(y, a), _SortedScore(y, b)
    ones = np.ones(y.size)
    diff = sa.auroc(ones) - sb.auroc(ones)
    _, member = np.unique(np.asarray(groups), return_inverse=True)
    k = int(member.max()) + 1 if member.size else 0
    rng = np.random.default_rng(seed)
    boot = np.empty(reps)
    for r in range(reps):
        w = np.bincount(rng.integers(0, k, k), minlength=k)[member]
        boot[r] = sa.auroc(w) - sb.auroc(w)
    boot = boot[np.isfinite(boot)]
    lo, hi = (float(x) for x in np.quantile(boot, [0.025, 0.975])) if boot.size else (math.nan,) * 2
    return {"difference": float(diff), "ci95": [lo, hi], "reps": reps, "unit": "patient"}


def auprc(y: A, s: A) -> float:
    """Average precision (step-wise area under the precision-recall curve, ties grouped)."""
    y = np.asarray(y, bool)
    s = np.asarray(s, np.float64)
    pos = int(y.sum())
    if pos == 0:
        return math.nan
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    tp = np.cumsum(ys)
    k = np.arange(1, ys.size + 1)
    last_of_tie = np.r_[ss[1:] != ss[:-1], True]
    tp_t, k_t = tp[last_of_tie], k[last_of_tie]
    prec = tp_t / k_t
    rec = tp_t / pos
    d_rec = np.diff(np.r_[0.0, rec])
    return float((prec * d_rec).sum())


def calibration(y: A, p: A, bins: int = 10) -> dict[str, Any]:
    """Reliability table on equal-width probability bins, expected calibration error, Brier."""
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    if y.size == 0:
        return {"bins": [], "ece": math.nan, "brier": math.nan, "n": 0}
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if not m.any():
            continue
        mp, fy = float(p[m].mean()), float(y[m].mean())
        table.append({"p_mean": mp, "observed": fy, "n": int(m.sum())})
        ece += m.sum() / y.size * abs(mp - fy)
    return {
        "bins": table,
        "ece": float(ece),
        "brier": float(((p - y) ** 2).mean()),
        "n": int(y.size),
    }


def mae_by_step(pred: A, actual: A) -> A:
    """``[..., D]`` absolute errors -> MAE per decoder step over observed (finite) entries."""
    err = np.abs(pred - actual)
    ok = np.isfinite(err)
    with np.errstate(invalid="ignore"):
        return np.where(ok, err, 0).sum(axis=0) / ok.sum(axis=0)


def coverage(lo: A, hi: A, actual: A) -> float:
    ok = np.isfinite(actual)
    if not ok.any():
        return math.nan
    inside = (actual >= lo) & (actual <= hi)
    return float(inside[ok].mean())


def nan_to_none(value: Any) -> Any:
    """Recursively replace NaN/inf floats by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    if isinstance(value, np.floating):
        return nan_to_none(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value
