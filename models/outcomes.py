"""The deterioration outcome: what the risk trajectory predicts and what evaluation scores.

A patient *deteriorates* at the first of

- a critical event (``labels.critical_event_ms``: the episode reached its critical burden), or
- NEWS2 in the high band (>= 7) for 15 minutes: three consecutive 5-minute bins, each scored
  from the bin means of the vitals (a vital stays current for its ``stale_after_s``, as in the
  twin), oxygen and ACVPU as of the bin's end. The time is the end of the third bin, when a
  clinician could have known.

Forecasts are scored only before a patient's first deterioration (after it, the patient is in
the escalation pathway, not awaiting early warning). A forecast made at ``t`` is positive for
horizon ``h`` if the deterioration time lies in ``(t, t + h]``, negative if the patient was still
observed at ``t + h`` without one, and censored (NaN) otherwise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from models import news2 as n2
from models.features import FeatureSpec
from twin.signals import SIGNALS, Signal

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
NEVER = np.iinfo(np.int64).max
HIGH_BAND = 7
SUSTAIN_BINS = 3


def ffill_limited(values: F32, limit: int) -> F32:
    """Forward-fill NaN along the last axis, at most ``limit`` positions after an observation."""
    n = values.shape[-1]
    seen = np.isfinite(values)
    idx = np.where(seen, np.arange(n), -1)
    np.maximum.accumulate(idx, axis=-1, out=idx)
    ok = (idx >= 0) & (np.arange(n) - idx <= limit)
    filled = np.take_along_axis(values, np.maximum(idx, 0), axis=-1)
    return np.where(ok, filled, np.nan).astype(np.float32)


def news2_series(
    bins: F32,
    spec: FeatureSpec,
    on_oxygen: npt.NDArray[np.bool_],
    not_alert: npt.NDArray[np.bool_],
    scale2: npt.NDArray[np.bool_],
) -> npt.NDArray[np.int16]:
    """NEWS2 per bin ``[P, B]`` from bin means ``[P, C, B]`` (staleness as in the twin)."""
    ci = spec.channel_index
    vit: dict[str, F32] = {}
    for name in n2.VITALS:
        limit = SIGNALS[Signal(name)].stale_after_s // spec.bin_s
        vit[name] = ffill_limited(bins[:, ci[name]], limit)
    return n2.news2_of(vit, on_oxygen=on_oxygen, not_alert=not_alert, scale2=scale2[:, None])


def sustained_high_ms(news2: npt.NDArray[np.int16], start_ms: I64, bin_ms: int) -> I64:
    """Per patient, when NEWS2 >= 7 had held for ``SUSTAIN_BINS`` bins (``NEVER`` if never)."""
    high = news2 >= HIGH_BAND
    run = high[:, : high.shape[1] - SUSTAIN_BINS + 1].copy()
    for k in range(1, SUSTAIN_BINS):
        run &= high[:, k : high.shape[1] - SUSTAIN_BINS + 1 + k]
    any_run = run.any(axis=1)
    first = np.argmax(run, axis=1)
    t = start_ms + (first + SUSTAIN_BINS) * bin_ms
    return np.where(any_run, t, NEVER).astype(np.int64)


def risk_labels(
    origin_ms: I64, event_ms: I64, data_end_ms: I64, horizons_h: tuple[float, ...]
) -> F32:
    """``[N, H]`` labels: 1 event within (t, t+h], 0 observed event-free to t+h, NaN censored."""
    h = np.asarray(horizons_h, dtype=np.float64) * 3_600_000
    until = origin_ms[:, None] + h[None, :].astype(np.int64)
    pos = event_ms[:, None] <= until
    neg = ~pos & (data_end_ms[:, None] >= until)
    out = np.where(pos, 1.0, np.where(neg, 0.0, np.nan))
    return out.astype(np.float32)
