"""Forecast inputs straight from twin states: no pandas and no ``TimeSeriesDataSet``.

``features_from_states`` reads the whole batch's bins at once (``twin.windows.bins_ending_at``:
the same values ``TwinState.window()`` reports, bit for bit, without a Python loop per twin and
bin) and each twin's newest statics, and calls the same ``features`` functions the training
windows were built with (``tests/models/test_fastpath_features.py`` holds the two equal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date
from functools import cache, lru_cache
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from models import news2 as news2_mod
from models.dataset import Windows
from models.errors import SpecMismatch
from models.features import (
    CONSCIOUSNESS_STALE_MS,
    LAB_STALE_MS,
    ORIGIN_FLAGS,
    PATIENT_FLAGS,
    FeatureSpec,
    StaticInputs,
    aggregate_steps,
    encoder_unknowns,
    fill_unobserved,
    forward_fill,
    known_inputs,
    static_inputs,
)
from twin.signals import SIGNALS, Signal
from twin.state import TwinState
from twin.windows import bins_ending_at

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ModelInputs:
    """A batch of forecast inputs (``Windows``' encoder side). All arrays share axis 0."""

    origin_ms: I64
    enc_unknown: F32  # [N, E, U]
    known: F32  # [N, E + D, K]
    statics: F32  # [N, S]
    last_obs: F32  # [N, T]
    news2_now: npt.NDArray[np.int16]

    @property
    def n(self) -> int:
        return int(self.origin_ms.shape[0])

    @classmethod
    def from_windows(cls, w: Windows) -> ModelInputs:
        return cls(w.origin_ms, w.enc_unknown, w.known, w.statics, w.last_obs, w.news2_now)

    @classmethod
    def concat(cls, parts: Sequence[ModelInputs]) -> ModelInputs:
        names = [f.name for f in fields(cls)]
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in names))

    def take(self, rows: npt.ArrayLike) -> ModelInputs:
        idx = np.asarray(rows)
        return ModelInputs(*(getattr(self, f.name)[idx] for f in fields(self)))


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@lru_cache(maxsize=1 << 16)
def _born_ordinal(birth_iso: str) -> int:
    """A birth date's ordinal: parsing the ISO date was a fifth of the statics' cost per twin."""
    return date.fromisoformat(birth_iso).toordinal()


def _age_years(birth_iso: str | None, at_ms: int) -> float:
    if not birth_iso:
        return math.nan
    # (date at at_ms - birth date).days, from the two dates' ordinals
    return (_EPOCH_ORDINAL + at_ms // 86_400_000 - _born_ordinal(birth_iso)) / 365.25


def _latest(st: TwinState, sig: Signal, at_ms: int, stale_ms: int) -> float:
    reading = st.latest.get(sig)
    if reading is None or reading[0] > at_ms or reading[0] < at_ms - stale_ms:
        return math.nan
    return float(reading[2])


def _on_oxygen(st: TwinState, at_ms: int) -> bool:
    best: tuple[int, bool] | None = None
    if st.oxygen is not None and st.oxygen[0] <= at_ms:
        best = (st.oxygen[0], bool(st.oxygen[2]))
    flow = st.latest.get(Signal.O2_FLOW)
    if flow is not None and flow[0] <= at_ms and (best is None or flow[0] > best[0]):
        best = (flow[0], flow[2] > 0)
    return False if best is None else best[1]


def states_statics(states: Sequence[TwinState], origin_ms: I64, spec: FeatureSpec) -> StaticInputs:
    at_ms = origin_ms.tolist()
    lab_reads = [(Signal(lab), LAB_STALE_MS[lab]) for lab in spec.labs]
    nan, o2_flow = math.nan, Signal.O2_FLOW
    acvpu_sig, acvpu_stale = Signal.CONSCIOUSNESS, CONSCIOUSNESS_STALE_MS
    # One row of plain Python values per twin, turned into arrays once: assigning numpy
    # elements one at a time cost more than reading the twin. The twin's fields come in one
    # attrgetter call, and its comorbidities, active medications, ACVPU, oxygen and labs are
    # read inline (the properties and _latest / _on_oxygen, same tests): the property calls
    # and frozensets were over a third of the loop.
    read = attrgetter("conditions", "medications", "demographics", "latest", "spo2_target")
    rows: list[tuple[float, ...]] = []
    for st, (conds, meds, demo, latest, target), at in zip(
        states, map(read, states), at_ms, strict=True
    ):
        com = [c for c, rec in conds.items() if rec[2]] if conds else ()
        active = [m for m, rec in meds.items() if rec[3] != "stopped"] if meds else ()
        reading = latest.get(acvpu_sig)
        alert = (
            reading is not None
            and at - acvpu_stale <= reading[0] <= at
            and math.isfinite(acvpu := float(reading[2]))
            and acvpu != 0
        )
        ox = st.oxygen
        flow = latest.get(o2_flow)
        if flow is not None and flow[0] <= at and (ox is None or ox[0] > at or flow[0] > ox[0]):
            on_oxygen = flow[2] > 0
        else:
            on_oxygen = ox is not None and ox[0] <= at and bool(ox[2])
        labs: list[float] = []
        for sig, stale in lab_reads:
            reading = latest.get(sig)
            if reading is not None and at - stale <= reading[0] <= at:
                labs.append(float(reading[2]))
            else:
                labs.append(nan)
        rows.append(
            (
                nan if demo is None else _age_years(demo[2], at),
                demo is not None and demo[3] == "female",
                "heart_failure" in com,
                "copd" in com,
                "type1_diabetes" in com or "type2_diabetes" in com,
                "ckd" in com,
                "hypertension" in com,
                "hypercapnic_respiratory_failure" in com or (target is not None and target[2] == 2),
                on_oxygen,
                "antibiotic" in active,
                "diuretic" in active,
                "insulin" in active,
                alert,
                *labs,
            )
        )
    n_flags = len(_STATIC_COLUMNS) - 1
    table = np.array(rows, dtype=np.float64).reshape(len(states), n_flags + 1 + len(lab_reads))
    # every flag in one comparison; each flag is a column of it
    flags = table[:, 1 : 1 + n_flags] > 0
    col = {name: j for j, name in enumerate(_STATIC_COLUMNS[1:])}
    return StaticInputs(
        age=table[:, 0],
        flags={f: flags[:, col[f]] for f in (*spec.patient_flags, *spec.origin_flags)},
        labs={lab: table[:, 1 + n_flags + j] for j, lab in enumerate(spec.labs)},
    )


# The order states_statics builds each row in (tests/models/test_fastpath_features.py compares
# the result with the per-twin reference, so a reordered flag list fails there).
_STATIC_COLUMNS = ("age", *PATIENT_FLAGS, *ORIGIN_FLAGS)


def states_bins(
    states: Sequence[TwinState], origin_ms: I64, spec: FeatureSpec
) -> tuple[F32, npt.NDArray[np.bool_]]:
    """``[N, C, lookback * step_bins]`` bins ending at each origin, from the twins' windows.

    The last column is the origin's bin, or the watermark's bin for an origin after it; bins
    outside a twin's window are NaN (``twin.windows.bins_ending_at``, one batch at a time).
    """
    bin_ms = {s.bin_ms for s in states}
    if bin_ms - {spec.bin_ms}:
        raise SpecMismatch(f"twin bins are {sorted(bin_ms)} ms, the model's {spec.bin_ms} ms")
    watermark_bin = np.array([s.watermark_ms for s in states], np.int64) // spec.bin_ms
    last = np.minimum(np.asarray(origin_ms, np.int64) // spec.bin_ms, watermark_bin)
    return bins_ending_at(states, last, spec.lookback_steps * spec.step_bins)


def features_from_states(
    states: Sequence[TwinState], spec: FeatureSpec, at_ms: Sequence[int] | None = None
) -> ModelInputs:
    """Model inputs for forecasts made at ``at_ms`` (default: each twin's current bin start).

    ``at_ms`` is a bin boundary at or before the twin's watermark (a ``ForecastDue`` slot).
    """
    if at_ms is None:
        origin = np.array([(s.watermark_ms // s.bin_ms) * s.bin_ms for s in states], np.int64)
    else:
        origin = (np.asarray(at_ms, np.int64) // spec.bin_ms) * spec.bin_ms
    bins, mask = states_bins(states, origin, spec)
    steps, obs = aggregate_steps(bins, mask, spec)
    lb, e = spec.lookback_steps, spec.encoder_steps
    # fill_steps in two halves: the forward fill's last column is the last observed step
    ffilled = forward_fill(steps, spec)
    enc = encoder_unknowns(fill_unobserved(ffilled[..., lb - e :], spec), obs[..., lb - e :], spec)
    sin = states_statics(states, origin, spec)
    ti = [spec.channel_index[t] for t in spec.targets]
    return ModelInputs(
        origin_ms=origin,
        enc_unknown=enc,
        known=known_inputs(origin, spec),
        statics=static_inputs(sin, spec),
        last_obs=np.ascontiguousarray(ffilled[:, ti, -1]),
        news2_now=news2_now(bins, sin, spec),
    )


def news2_now(bins: F32, sin: StaticInputs, spec: FeatureSpec) -> npt.NDArray[np.int16]:
    """NEWS2 at the last bin: ``outcomes.news2_series(...)[:, -1]`` without the other bins.

    Each vital counts while it is fresh (``stale_after_s``), so only the newest observed bin
    within that many bins of the end can score; scoring every bin of the day only to keep the
    last one was the costliest step of building the features.
    """
    n, _, width = bins.shape
    vit: dict[str, F32] = {}
    # Vitals that stay fresh equally long are read together: one set of numpy calls each.
    for limit, names, channels in _news2_groups(spec):
        tail = bins[:, channels, max(width - 1 - limit, 0) :]  # [N, vitals, bins]
        seen = ~np.isnan(tail)
        newest = tail.shape[-1] - 1 - np.argmax(seen[..., ::-1], axis=-1)
        value = tail[np.arange(n)[:, None], np.arange(len(names)), newest]
        value = np.where(seen.any(axis=-1), value, np.float32(np.nan))
        vit.update({name: value[:, j] for j, name in enumerate(names)})
    return news2_mod.news2_of(
        vit,
        on_oxygen=sin.flags["on_oxygen"],
        not_alert=sin.flags["not_alert"],
        scale2=sin.flags["spo2_scale2"],
    )


@cache
def _news2_groups(spec: FeatureSpec) -> list[tuple[int, list[str], list[int]]]:
    """(bins a vital stays fresh, the NEWS2 vitals that do, their channels), by freshness."""
    groups: dict[int, list[str]] = {}
    for name in news2_mod.VITALS:
        groups.setdefault(SIGNALS[Signal(name)].stale_after_s // spec.bin_s, []).append(name)
    ci = spec.channel_index
    return [(limit, names, [ci[n] for n in names]) for limit, names in groups.items()]
