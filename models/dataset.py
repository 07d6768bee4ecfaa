"""Training windows as numpy arrays, built vectorised from a ``schema.Dataset``.

``build_windows`` bins every patient's samples on an absolute 5-minute grid exactly as the twin
does (``features.bin_samples``), aggregates steps, and cuts one window per forecast origin
(every ``stride_steps`` steps) by fancy indexing, never by a per-window Python loop. Each
window holds what the model may see at its origin - encoder inputs from the 24 h before it,
statics as of it - and, separately, what happened after it (decoder targets, labels). The
encoder side calls the same ``features`` functions as the streaming fast path, on the same
24 h of bins, so training and inference cannot drift apart (``tests/models`` checks a window
against one built from a live ``TwinState``).

``to_frame`` / ``timeseries_dataset`` turn windows into pytorch-forecasting's long format, one
group per window, which is how ``predict()`` and the default data pipeline see the very same
windows (used by the parity test and the training benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from models import outcomes
from models.errors import SchemaError
from models.features import (
    CONSCIOUSNESS_STALE_MS,
    LAB_STALE_MS,
    FeatureSpec,
    StaticInputs,
    aggregate_steps,
    bin_samples,
    encoder_unknowns,
    fill_steps,
    known_inputs,
    static_inputs,
)
from models.schema import Dataset

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
_SHIFT = 42  # as-of keys: patient index << 42 | ms since the dataset's first time


@dataclass(frozen=True)
class Windows:
    """One row per forecast origin. Encoder-side arrays hold only what was known at the origin."""

    patient_ids: tuple[str, ...]  # indexed by ``patient``
    patient: I64  # [N]
    origin_ms: I64  # [N]
    enc_unknown: F32  # [N, E, U] normalised, spec.unknown_reals order
    enc_targets: F32  # [N, E, T] filled raw values (pytorch-forecasting normalises targets)
    known: F32  # [N, E + D, K] spec.known_reals
    statics: F32  # [N, S] normalised, spec.static_reals order
    last_obs: F32  # [N, T] raw value of the last observed step in the lookback, else NaN
    dec_targets: F32  # [N, D, T] raw step means after the origin, NaN where unobserved
    news2_now: npt.NDArray[np.int16]  # [N] NEWS2 of the bins ending at the origin
    event_ms: I64  # [N] the patient's first deterioration (outcomes.NEVER if none)
    data_end_ms: I64  # [N] the patient's last sample
    labels: F32  # [N, H] outcomes.risk_labels for spec.risk_horizons_h

    @property
    def n(self) -> int:
        return int(self.patient.shape[0])

    @property
    def dec_mask(self) -> BOOL:
        return np.isfinite(self.dec_targets)

    @property
    def eligible(self) -> BOOL:
        """Origins before the patient's first deterioration: those risk is scored on."""
        return self.origin_ms < self.event_ms

    def take(self, rows: npt.ArrayLike) -> Windows:
        idx = np.asarray(rows)
        return Windows(
            **{
                f.name: getattr(self, f.name)
                if f.name == "patient_ids"
                else getattr(self, f.name)[idx]
                for f in fields(self)
            }
        )

    @staticmethod
    def concat(parts: list[Windows]) -> Windows:
        if not parts:
            raise SchemaError("no windows to concatenate")
        ids = parts[0].patient_ids
        if any(p.patient_ids != ids for p in parts):
            raise SchemaError("windows from different datasets cannot be concatenated")
        return Windows(
            **{
                f.name: ids
                if f.name == "patient_ids"
                else np.concatenate([getattr(p, f.name) for p in parts])
                for f in fields(Windows)
            }
        )

    @staticmethod
    def merge(parts: list[Windows]) -> Windows:
        """Windows of different datasets as one: each part's patient indices are offset past
        the previous parts', so its patients stay distinct groups even where ids repeat (two
        simulated cohorts both name their patients from 0)."""
        if not parts:
            raise SchemaError("no windows to merge")
        offsets = np.cumsum([0, *(len(p.patient_ids) for p in parts[:-1])])
        shifted = [
            replace(p, patient=p.patient + off) for p, off in zip(parts, offsets, strict=True)
        ]
        ids = tuple(i for p in parts for i in p.patient_ids)
        return Windows.concat([replace(p, patient_ids=ids) for p in shifted])


@dataclass(frozen=True)
class Grid:
    """Every patient's bins on an absolute grid that starts on a step boundary."""

    patient_ids: tuple[str, ...]
    start_ms: I64  # [P]
    bins: F32  # [P, C, B]
    mask: BOOL  # [P, C, B]
    first_ms: I64  # [P] first windowed sample (-1: none)
    last_ms: I64  # [P] last windowed sample
    data_end_ms: I64  # [P] last sample of any signal


def build_grid(ds: Dataset, spec: FeatureSpec) -> Grid:
    ids = tuple(ds.patient_ids)
    pindex = {p: i for i, p in enumerate(ids)}
    n_p = len(ids)
    s = ds.samples
    win = s[s["signal"].isin(spec.channels)]
    prow = win["patient_id"].map(pindex).to_numpy(np.int64)
    t = win["t_ms"].to_numpy(np.int64)
    first = np.full(n_p, np.iinfo(np.int64).max, np.int64)
    last = np.full(n_p, -1, np.int64)
    np.minimum.at(first, prow, t)
    np.maximum.at(last, prow, t)
    has = last >= 0
    first = np.where(has, first, 0)
    start = (first // spec.step_ms) * spec.step_ms
    n_bins = np.where(has, (last - start) // spec.bin_ms + 1, 0)
    width = int(-(-max(int(n_bins.max(initial=0)), 1) // spec.step_bins) * spec.step_bins)
    ch = win["signal"].map(spec.channel_index).to_numpy(np.int64)
    b = (t - start[prow]) // spec.bin_ms
    bins, mask = bin_samples(
        prow,
        ch,
        b,
        win["value"].to_numpy(np.float64),
        (n_p, len(spec.channels), width),
        sum_channels=tuple(i for i, c in enumerate(spec.channels) if c == "steps"),
    )
    all_rows = s["patient_id"].map(pindex).to_numpy(np.int64)
    end = np.full(n_p, -1, np.int64)
    np.maximum.at(end, all_rows, s["t_ms"].to_numpy(np.int64))
    return Grid(ids, start, bins, mask, np.where(has, first, -1), last, end)


class AsOf:
    """The latest value of one kind per patient known at query times, vectorised."""

    def __init__(
        self, patient: I64, t_ms: I64, value: npt.NDArray[Any], known_ms: I64 | None = None
    ) -> None:
        known = t_ms if known_ms is None else known_ms
        self.base = int(min(known.min(initial=0), t_ms.min(initial=0))) - 1
        key = (patient << _SHIFT) | (known - self.base)
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        self.t = t_ms[order]
        self.value = value[order]

    def lookup(self, patient: I64, at_ms: I64) -> tuple[I64, npt.NDArray[Any], BOOL]:
        """(observed ms, value, found) of the latest entry known by ``at_ms`` (inclusive)."""
        q = (patient << _SHIFT) | np.maximum(at_ms - self.base, 0)
        i = np.searchsorted(self.key, q, side="right") - 1
        found = i >= 0
        ic = np.maximum(i, 0)
        if self.key.size == 0:
            empty = np.zeros(patient.shape, dtype=bool)
            return np.zeros(patient.shape, np.int64), np.zeros(patient.shape), empty
        found &= (self.key[ic] >> _SHIFT) == patient
        return self.t[ic], self.value[ic], found


def _asof_signal(ds: Dataset, pindex: dict[str, int], signal: str) -> AsOf:
    s = ds.samples[ds.samples["signal"] == signal]
    known = None
    if "available_ms" in s.columns:
        avail = s["available_ms"]
        known = avail.fillna(s["t_ms"]).to_numpy(np.int64) if len(s) else None
    return AsOf(
        s["patient_id"].map(pindex).to_numpy(np.int64),
        s["t_ms"].to_numpy(np.int64),
        s["value"].to_numpy(np.float64),
        known,
    )


class OriginState:
    """What the twin would know at an origin besides its window: oxygen, drugs, ACVPU, labs."""

    def __init__(self, ds: Dataset, spec: FeatureSpec, pindex: dict[str, int]) -> None:
        self.spec = spec
        self.o2 = _asof_signal(ds, pindex, "o2_flow")
        self.acvpu = _asof_signal(ds, pindex, "consciousness")
        self.labs = {lab: _asof_signal(ds, pindex, lab) for lab in spec.labs}
        tr = ds.treatments
        self.meds: dict[str, AsOf] = {}
        for med in ("antibiotic", "diuretic", "insulin"):
            part = tr[tr["medication"] == med]
            self.meds[med] = AsOf(
                part["patient_id"].map(pindex).to_numpy(np.int64),
                part["t_ms"].to_numpy(np.int64),
                (part["action"] != "stopped").to_numpy(),
            )

    def flags(self, patient: I64, at_ms: I64) -> dict[str, BOOL]:
        _, flow, found = self.o2.lookup(patient, at_ms)
        out = {"on_oxygen": found & (np.asarray(flow, dtype=np.float64) > 0)}
        for med, table in self.meds.items():
            _, active, found = table.lookup(patient, at_ms)
            out[med] = found & np.asarray(active, dtype=bool)
        t, level, found = self.acvpu.lookup(patient, at_ms)
        fresh = found & (t >= at_ms - CONSCIOUSNESS_STALE_MS)
        out["not_alert"] = fresh & (np.asarray(level, dtype=np.float64) != 0)
        return out

    def lab_values(self, patient: I64, at_ms: I64) -> dict[str, npt.NDArray[np.float64]]:
        out = {}
        for lab, table in self.labs.items():
            t, value, found = table.lookup(patient, at_ms)
            fresh = found & (t >= at_ms - LAB_STALE_MS[lab])
            out[lab] = np.where(fresh, np.asarray(value, dtype=np.float64), np.nan)
        return out


def patient_flags(ds: Dataset) -> dict[str, BOOL]:
    st = ds.static
    return {
        "female": (st["sex"] == "female").to_numpy(),
        "heart_failure": st["heart_failure"].to_numpy(bool),
        "copd": st["copd"].to_numpy(bool),
        "diabetes": (st["type1_diabetes"] | st["type2_diabetes"]).to_numpy(bool),
        "ckd": st["ckd"].to_numpy(bool),
        "hypertension": st["hypertension"].to_numpy(bool),
        "spo2_scale2": st["hypercapnic_respiratory_failure"].to_numpy(bool),
    }


def deterioration_ms(
    ds: Dataset, spec: FeatureSpec, grid: Grid, origin: OriginState
) -> tuple[I64, npt.NDArray[np.int16]]:
    """Per patient: first deterioration time (``outcomes``), and NEWS2 per bin ``[P, B]``."""
    n_p, _, width = grid.bins.shape
    ends = grid.start_ms[:, None] + (np.arange(width)[None, :] + 1) * spec.bin_ms - 1
    pat = np.repeat(np.arange(n_p, dtype=np.int64), width)
    flags = origin.flags(pat, ends.reshape(-1))
    scale2 = patient_flags(ds)["spo2_scale2"]
    score = outcomes.news2_series(
        grid.bins,
        spec,
        flags["on_oxygen"].reshape(n_p, width),
        flags["not_alert"].reshape(n_p, width),
        scale2,
    )
    high = outcomes.sustained_high_ms(score, grid.start_ms, spec.bin_ms)
    crit = np.full(n_p, outcomes.NEVER, np.int64)
    lab = ds.labels[ds.labels["critical_event_ms"].notna()]
    if len(lab):
        pindex = {p: i for i, p in enumerate(grid.patient_ids)}
        np.minimum.at(
            crit,
            lab["patient_id"].map(pindex).to_numpy(np.int64),
            lab["critical_event_ms"].to_numpy(np.int64),
        )
    return np.minimum(high, crit), score


def build_windows(
    ds: Dataset,
    spec: FeatureSpec,
    *,
    stride_steps: int = 1,
    min_history_steps: int = 2,
    chunk: int = 20_000,
) -> Windows:
    """Every origin on the step grid from ``min_history_steps`` after a patient's first sample
    to the end of the step holding the last one, every ``stride_steps``."""
    grid = build_grid(ds, spec)
    pindex = {p: i for i, p in enumerate(grid.patient_ids)}
    origin = OriginState(ds, spec, pindex)
    event, score = deterioration_ms(ds, spec, grid, origin)
    steps, obs = aggregate_steps(grid.bins, grid.mask, spec)
    n_p, n_ch, _n_steps = steps.shape
    lb, e, d = spec.lookback_steps, spec.encoder_steps, spec.decoder_steps
    pad_l = np.full((n_p, n_ch, lb), np.nan, np.float32)
    pad_r = np.full((n_p, n_ch, d), np.nan, np.float32)
    steps_p = np.concatenate([pad_l, steps, pad_r], axis=-1)
    obs_p = np.concatenate([np.zeros_like(pad_l), obs, np.zeros_like(pad_r)], axis=-1)

    has = grid.first_ms >= 0
    first_step = (grid.first_ms - grid.start_ms) // spec.step_ms
    last_step = (grid.last_ms - grid.start_ms) // spec.step_ms
    lo = first_step + min_history_steps
    counts = np.where(has, np.maximum((last_step + 1 - lo) // stride_steps + 1, 0), 0)
    patient = np.repeat(np.arange(n_p, dtype=np.int64), counts)
    offset = np.arange(patient.size) - np.repeat(np.cumsum(counts) - counts, counts)
    o = lo[patient] + offset * stride_steps  # origin step on each patient's grid
    origin_ms = grid.start_ms[patient] + o * spec.step_ms

    pflags = patient_flags(ds)
    age = ds.static["age"].to_numpy(np.float64)
    ti = [spec.channel_index[t] for t in spec.targets]
    parts: list[Windows] = []
    for a in range(0, patient.size, chunk):
        p, oo, om = patient[a : a + chunk], o[a : a + chunk], origin_ms[a : a + chunk]
        look = oo[:, None] + np.arange(lb)[None, :]  # padded index of steps [o - lb, o)
        win = np.transpose(steps_p[p[:, None], :, look], (0, 2, 1))  # [n, C, lb]
        wobs = np.transpose(obs_p[p[:, None], :, look], (0, 2, 1))
        filled = fill_steps(win, spec)
        enc = encoder_unknowns(filled, wobs[..., lb - e :], spec)
        seen = np.isfinite(win)
        last_idx = np.where(seen.any(-1), lb - 1 - np.argmax(seen[..., ::-1], axis=-1), 0)
        last_val = np.take_along_axis(win, last_idx[..., None], axis=-1)[..., 0]
        last_val = np.where(seen.any(-1), last_val, np.nan)
        fut = oo[:, None] + lb + np.arange(d)[None, :]
        dec = np.transpose(steps_p[p[:, None], :, fut], (0, 2, 1))[:, ti]  # [n, T, D]
        flags = {k: v[p] for k, v in pflags.items()}
        flags.update(origin.flags(p, om))
        sinp = StaticInputs(age=age[p], flags=flags, labs=origin.lab_values(p, om))
        now_bin = np.clip(oo * spec.step_bins - 1, 0, score.shape[1] - 1)
        parts.append(
            Windows(
                patient_ids=grid.patient_ids,
                patient=p,
                origin_ms=om,
                enc_unknown=enc,
                enc_targets=np.transpose(filled[:, ti], (0, 2, 1)).copy(),
                known=known_inputs(om, spec),
                statics=static_inputs(sinp, spec),
                last_obs=last_val[:, ti].astype(np.float32),
                dec_targets=np.transpose(dec, (0, 2, 1)).copy(),
                news2_now=score[p, now_bin],
                event_ms=event[p],
                data_end_ms=grid.data_end_ms[p],
                labels=outcomes.risk_labels(
                    om, event[p], grid.data_end_ms[p], spec.risk_horizons_h
                ),
            )
        )
    if not parts:
        raise SchemaError("the dataset yields no forecast windows (too little data per patient)")
    return Windows.concat(parts)


# ---- pytorch-forecasting's view of the same windows ---------------------------------------

WEIGHT = "target_mask"  # per decoder step: bit k set = target k observed (losses.MaskedMultiLoss)


def target_bits(mask: BOOL) -> F32:
    """``[N, D, T]`` observed mask -> ``[N, D]`` bitmask weights (exact in float32 for T < 24)."""
    w = (mask.astype(np.int64) << np.arange(mask.shape[-1])[None, None, :]).sum(-1)
    return w.astype(np.float32)


def to_frame(w: Windows, spec: FeatureSpec) -> pd.DataFrame:
    """Long format, one group per window; decoder rows carry placeholders for unknown inputs."""
    n, e, d = w.n, spec.encoder_steps, spec.decoder_steps
    t = e + d
    cols: dict[str, Any] = {
        "window": np.repeat(np.arange(n), t).astype(str),
        "time_idx": np.tile(np.arange(t), n),
    }
    last = w.enc_targets[:, -1:, :]
    dec = np.where(w.dec_mask, w.dec_targets, last)  # finite placeholders where unobserved
    targ = np.concatenate([w.enc_targets, dec], axis=1)
    for k, name in enumerate(spec.targets):
        cols[name] = targ[:, :, k].reshape(-1).astype(np.float64)
    for k, name in enumerate(spec.unknown_reals):
        if name in spec.targets:
            continue
        vals = np.concatenate([w.enc_unknown[:, :, k], np.zeros((n, d), np.float32)], axis=1)
        cols[name] = vals.reshape(-1)
    for k, name in enumerate(spec.known_reals):
        cols[name] = w.known[:, :, k].reshape(-1)
    for k, name in enumerate(spec.static_reals):
        cols[name] = np.repeat(w.statics[:, k], t)
    bits = np.concatenate([np.zeros((n, e), np.float32), target_bits(w.dec_mask)], axis=1)
    cols[WEIGHT] = bits.reshape(-1)
    return pd.DataFrame(cols)


def target_normalizer(spec: FeatureSpec) -> Any:
    """The TFT's target normaliser: pre-fitted to the spec's fixed centre and scale."""
    from pytorch_forecasting.data import MultiNormalizer, TorchNormalizer

    norms = []
    for name in spec.targets:
        center, scale = spec.center_scale(name)
        norm = TorchNormalizer(method="standard", center=True)
        norm.center_ = np.float64(center)
        norm.scale_ = np.float64(scale)
        norms.append(norm)
    multi = MultiNormalizer(norms)
    multi.fitted_ = True
    return multi


def dataset_kwargs(spec: FeatureSpec) -> dict[str, Any]:
    others = [*spec.unknown_reals, *spec.known_reals, *spec.static_reals]
    return {
        "time_idx": "time_idx",
        "target": list(spec.targets),
        "group_ids": ["window"],
        "weight": WEIGHT,
        "max_encoder_length": spec.encoder_steps,
        "min_encoder_length": spec.encoder_steps,
        "max_prediction_length": spec.decoder_steps,
        "min_prediction_length": spec.decoder_steps,
        "static_reals": list(spec.static_reals),
        "time_varying_known_reals": list(spec.known_reals),
        "time_varying_unknown_reals": list(spec.unknown_reals),
        "add_relative_time_idx": True,
        "add_target_scales": False,
        "add_encoder_length": False,
        "target_normalizer": target_normalizer(spec),
        "scalers": {r: None for r in others if r not in spec.targets},
        "randomize_length": None,
    }


def timeseries_dataset(frame: pd.DataFrame, spec: FeatureSpec) -> Any:
    from pytorch_forecasting import TimeSeriesDataSet

    return TimeSeriesDataSet(frame, **dataset_kwargs(spec))


def x_reals(spec: FeatureSpec) -> list[str]:
    """The order of ``x_cont`` columns pytorch-forecasting builds for this spec."""
    return [*spec.static_reals, *spec.known_reals, "relative_time_idx", *spec.unknown_reals]
