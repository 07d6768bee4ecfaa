"""The feature spec and the numpy feature functions that training and the fast path share.

Time. The twin keeps 5-minute bins (``bin_s``) of each channel of
``twin.signals.WINDOW_CHANNELS`` for 24 h: the mean of the samples in a bin, or their sum for
steps; a bin without samples is NaN with mask False. The model works in *steps* of
``step_bins`` bins (1 h by default): a step's value is the mean of its bins that hold data,
and ``obs`` is the share of its bins that do. Steps are counted back from the forecast origin
(a bin boundary): step -1 is the ``step_bins`` bins ending at the origin. The encoder sees the
last ``encoder_steps`` steps (12 h), the decoder forecasts the next ``decoder_steps`` (12 h).
Hourly steps halve the network's cost against 30-minute ones (measured: 8,400 vs 3,700
forecasts/s at batch 1000 on one core) at the price of a coarser trajectory.

Missing data (documented policy, identical in training and inference). A missing encoder step
takes the last observed step value at most ``lookback_steps`` steps (23 h) before the origin,
i.e. anything still inside the twin's 24 h window; a channel never observed in that time takes
its normalisation centre (0 after normalising). ``obs_*`` inputs tell the model which steps were
real. Decoder targets are never filled for the loss: an unobserved target step is masked.

Inputs. Static reals are known for the patient (age, sex, comorbidities) or as of the origin
(oxygen, active antibiotic / diuretic / insulin, not alert on ACVPU, latest labs): the twin
keeps only the newest value of these, so they enter as per-forecast statics, never as histories.
The only known-future inputs are the time of day (and pytorch-forecasting's relative time
index). Treatments after the origin are *not* used as known-future inputs: in the data they
follow the clinicians' recognition of a deterioration and would leak the outcome.

Normalisation is fixed in the spec (centre, scale per input), not fitted, so a spec - and its
hash - does not depend on the data; the same constants are the target normaliser of the TFT.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from models.errors import SpecMismatch
from twin.signals import SIGNALS, WINDOW_CHANNELS, Signal

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

# Bump when a feature function changes meaning: checkpoints built before are then refused.
FEATURE_CODE_VERSION = 1
CHANNELS: tuple[str, ...] = tuple(s.value for s in WINDOW_CHANNELS)
TARGETS: tuple[str, ...] = (
    "heart_rate",
    "respiratory_rate",
    "spo2",
    "temperature",
    "systolic_bp",
    "glucose",
)
# Presence of a device: the wearable (heart rate), the cuff (systolic BP), the CGM (glucose).
OBS_CHANNELS: tuple[str, ...] = ("heart_rate", "systolic_bp", "glucose")
LABS: tuple[str, ...] = ("lactate", "wbc", "crp", "creatinine")
MEDICATIONS: tuple[str, ...] = ("antibiotic", "diuretic", "insulin")
PATIENT_FLAGS: tuple[str, ...] = (
    "female",
    "heart_failure",
    "copd",
    "diabetes",
    "ckd",
    "hypertension",
    "spo2_scale2",
)
ORIGIN_FLAGS: tuple[str, ...] = ("on_oxygen", *MEDICATIONS, "not_alert")
KNOWN_REALS: tuple[str, ...] = ("tod_sin", "tod_cos")
QUANTILES: tuple[float, ...] = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)

# (centre, scale): population-typical values, so a normalised 0 is "unremarkable".
NORMALISATION: tuple[tuple[str, float, float], ...] = (
    ("heart_rate", 80.0, 15.0),
    ("respiratory_rate", 17.0, 5.0),
    ("spo2", 95.0, 3.0),
    ("temperature", 37.0, 0.7),
    ("systolic_bp", 125.0, 20.0),
    ("glucose", 130.0, 45.0),
    ("steps", 8.0, 20.0),  # per 5-minute bin
    ("age", 70.0, 15.0),
    ("lactate", 1.5, 1.5),
    ("wbc", 9.0, 4.0),
    ("crp", 30.0, 60.0),
    ("creatinine", 1.0, 0.6),
)
# How long a lab or an ACVPU assessment stays current, as the twin scores it.
LAB_STALE_MS: dict[str, int] = {lab: SIGNALS[Signal(lab)].stale_after_s * 1000 for lab in LABS}
CONSCIOUSNESS_STALE_MS = SIGNALS[Signal.CONSCIOUSNESS].stale_after_s * 1000


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that fixes what a model sees. Two specs are compatible iff their hashes match."""

    bin_s: int = 300
    window_bins: int = 288
    step_bins: int = 12
    encoder_steps: int = 12
    decoder_steps: int = 12
    lookback_steps: int = 23
    channels: tuple[str, ...] = CHANNELS
    targets: tuple[str, ...] = TARGETS
    obs_channels: tuple[str, ...] = OBS_CHANNELS
    labs: tuple[str, ...] = LABS
    patient_flags: tuple[str, ...] = PATIENT_FLAGS
    origin_flags: tuple[str, ...] = ORIGIN_FLAGS
    known_reals: tuple[str, ...] = KNOWN_REALS
    quantiles: tuple[float, ...] = QUANTILES
    risk_horizons_h: tuple[float, ...] = (1, 2, 4, 6, 8, 12)
    normalisation: tuple[tuple[str, float, float], ...] = NORMALISATION
    code_version: int = FEATURE_CODE_VERSION
    _norm: dict[str, tuple[float, float]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_norm", {n: (c, s) for n, c, s in self.normalisation})
        if self.window_bins % self.step_bins:
            raise SpecMismatch("window_bins must be a whole number of steps")
        if not 0 < self.encoder_steps <= self.lookback_steps < self.window_bins // self.step_bins:
            raise SpecMismatch("need 0 < encoder_steps <= lookback_steps < steps in the window")
        if self.decoder_steps <= 0 or self.step_bins <= 0 or self.bin_s <= 0:
            raise SpecMismatch("decoder_steps, step_bins and bin_s must be positive")
        if not set(self.targets) <= set(self.channels) or not set(self.obs_channels) <= set(
            self.channels
        ):
            raise SpecMismatch("targets and obs_channels must be channels")
        longest = max(self.risk_horizons_h) * 3600 / self.step_s
        if longest > self.decoder_steps:
            raise SpecMismatch("risk horizons must lie within the decoder horizon")
        if 0.5 not in self.quantiles or list(self.quantiles) != sorted(self.quantiles):
            raise SpecMismatch("quantiles must be increasing and include the median 0.5")
        missing = [n for n in (*self.channels, "age", *self.labs) if n not in self._norm]
        if missing:
            raise SpecMismatch(f"normalisation lacks {missing}")

    # ---- derived names and sizes ----------------------------------------------------------

    @property
    def bin_ms(self) -> int:
        return self.bin_s * 1000

    @property
    def step_s(self) -> int:
        return self.bin_s * self.step_bins

    @property
    def step_ms(self) -> int:
        return self.step_s * 1000

    @property
    def horizon_steps(self) -> tuple[int, ...]:
        """Decoder steps (1-based count) that end each risk horizon."""
        return tuple(round(h * 3600 / self.step_s) for h in self.risk_horizons_h)

    @property
    def unknown_reals(self) -> tuple[str, ...]:
        """Encoder-only inputs: targets first (as pytorch-forecasting orders them), then the rest."""
        rest = tuple(c for c in self.channels if c not in self.targets)
        return (*self.targets, *rest, *(f"obs_{c}" for c in self.obs_channels))

    @property
    def static_reals(self) -> tuple[str, ...]:
        return ("age", *self.patient_flags, *self.origin_flags, *self.labs)

    @property
    def channel_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.channels)}

    def center_scale(self, name: str) -> tuple[float, float]:
        return self._norm.get(name, (0.0, 1.0))

    # ---- identity -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_norm", None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        known = {k: v for k, v in data.items() if k != "_norm"}
        try:
            for key, value in list(known.items()):
                if isinstance(value, list):
                    known[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            return cls(**known)
        except TypeError as exc:
            raise SpecMismatch(f"not a feature spec this version understands: {exc}") from None

    def hash(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def check_twin_compatible(self) -> None:
        """Refuse a spec this code cannot build from a twin (other channels or code version)."""
        if self.code_version != FEATURE_CODE_VERSION:
            raise SpecMismatch(
                f"feature code version {self.code_version} != this code's {FEATURE_CODE_VERSION}"
            )
        if self.channels != CHANNELS:
            raise SpecMismatch(f"spec channels {self.channels} differ from the twin's {CHANNELS}")


DEFAULT_SPEC = FeatureSpec()


# ---- binning (exactly as the twin) ---------------------------------------------------------

FIXED_POINT = 1000  # twin.state.FIXED_POINT: bins sum thousandths of the canonical unit


def bin_samples(
    row: npt.NDArray[np.int64],
    channel: npt.NDArray[np.int64],
    bin_index: npt.NDArray[np.int64],
    value: F64,
    shape: tuple[int, int, int],
    sum_channels: tuple[int, ...] = (CHANNELS.index(Signal.STEPS.value),),
) -> tuple[F32, BOOL]:
    """Bins ``[rows, channels, bins]`` from samples, the way ``TwinState.window`` reports them.

    Each value is rounded to a fixed-point integer, summed per bin, and the bin reports
    ``total / (count * 1000)`` (``total / 1000`` for steps), stored as float32.
    """
    n_rows, n_ch, n_bins = shape
    flat = (row * n_ch + channel) * n_bins + bin_index
    size = n_rows * n_ch * n_bins
    # np.round is round-half-even like Python's round() in twin.transition.
    fixed = np.round(value * FIXED_POINT).astype(np.int64)
    totals = np.bincount(flat, weights=fixed.astype(np.float64), minlength=size)
    counts = np.bincount(flat, minlength=size)
    totals = np.rint(totals).astype(np.int64).reshape(shape)
    counts = counts.reshape(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = totals / (counts * FIXED_POINT)
    out = means
    for ch in sum_channels:
        out[:, ch] = totals[:, ch] / FIXED_POINT
    mask = counts > 0
    out = np.where(mask, out, np.nan).astype(np.float32)
    return out, mask


# ---- steps and encoder inputs ------------------------------------------------------------


def aggregate_steps(values: F32, mask: BOOL, spec: FeatureSpec) -> tuple[F32, F32]:
    """Bins ``[N, C, B]`` (last bin ends at the origin) -> step values and obs ``[N, C, B//k]``."""
    n, c, b = values.shape
    k = spec.step_bins
    s = b // k
    v = values[..., b - s * k :].reshape(n, c, s, k)
    m = mask[..., b - s * k :].reshape(n, c, s, k)
    # Summed as matrix-vector products: a numpy reduction over a last axis this short pays
    # per output (two thirds of this function at batch 32). Counts are exact; so is the float64
    # sum of k float32 values unless they span more than 2**25 in magnitude (never so for
    # binned vitals: tests/models/test_fastpath_features.py holds it equal to add.reduce).
    ones = np.ones(k)
    count = (m.astype(np.float64).reshape(-1, k) @ ones).reshape(n, c, s)
    total = (np.where(m, v, np.float64(0)).reshape(-1, k) @ ones).reshape(n, c, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        step = (total / count).astype(np.float32)  # 0/0 -> NaN where no bin has data
    return step, (count / k).astype(np.float32)


def fill_steps(steps: F32, spec: FeatureSpec) -> F32:
    """Forward-fill ``[N, C, L]`` steps (L = lookback) and take the last encoder steps.

    Never-observed values become the channel's normalisation centre (module docstring).
    """
    filled = forward_fill(steps, spec)
    return fill_unobserved(filled[..., spec.lookback_steps - spec.encoder_steps :], spec)


def forward_fill(steps: F32, spec: FeatureSpec) -> F32:
    """``[N, C, lookback]``: the last lookback steps of ``[N, C, L]`` (NaN-padded in front when
    shorter), each unobserved step holding the last observed value before it, NaN before any.
    The last column is each channel's last observed value (``ModelInputs.last_obs``)."""
    n, c, s = steps.shape
    lb = spec.lookback_steps
    if s < lb:
        pad = np.full((n, c, lb - s), np.nan, dtype=np.float32)
        steps = np.concatenate([pad, steps], axis=-1)
    elif s > lb:
        steps = steps[..., s - lb :]
    seen = np.isfinite(steps)
    idx = np.where(seen, np.arange(lb), 0)
    np.maximum.accumulate(idx, axis=-1, out=idx)
    # Flat positions: take_along_axis builds an index grid for every axis on each call.
    idx += np.arange(0, n * c * lb, lb).reshape(n, c, 1)
    filled = steps.reshape(-1)[idx]
    return np.where(seen.reshape(-1)[idx], filled, np.float32(np.nan))


def fill_unobserved(values: F32, spec: FeatureSpec) -> F32:
    """``[N, C, S]`` values with each NaN replaced by its channel's normalisation centre."""
    centres = _constants(spec).channel_centres[None, :, None]
    return np.where(np.isfinite(values), values, centres).astype(np.float32, copy=False)


def normalise(name: str, values: npt.NDArray[Any], spec: FeatureSpec) -> F32:
    center, scale = spec.center_scale(name)
    return ((np.asarray(values, dtype=np.float64) - center) / scale).astype(np.float32)


@dataclass(frozen=True)
class _Constants:
    """A spec's index lists and normalisation arrays, built once: rebuilding them on every
    call cost the fast path more than some of the arithmetic. Arrays are read-only."""

    channel_centres: F32  # [C]
    unknown_values: list[int]  # channels of the unknown reals before the obs_* ones
    unknown_centre: F64  # [V, 1]
    unknown_scale: F64  # [V, 1]
    unknown_obs: list[int]  # channels of the obs_* unknown reals, which come last
    static_centre: F64  # [S] per static real (flags: 0, scale 1: their value as is)
    static_scale: F64
    known_offset_ms: F64  # [E + D] each step's midpoint after the origin


@cache
def _constants(spec: FeatureSpec) -> _Constants:
    ci = spec.channel_index
    values = [n for n in spec.unknown_reals if not n.startswith("obs_")]
    obs = [n[4:] for n in spec.unknown_reals if n.startswith("obs_")]
    if list(spec.unknown_reals) != [*values, *(f"obs_{c}" for c in obs)]:
        raise SpecMismatch("unknown reals must list the obs_* inputs last")
    scaled = {"age", *spec.labs}
    norm = [spec.center_scale(n) if n in scaled else (0.0, 1.0) for n in spec.static_reals]
    rel = np.arange(-spec.encoder_steps, spec.decoder_steps, dtype=np.float64) + 0.5
    return _Constants(
        channel_centres=_frozen(
            np.array([spec.center_scale(c)[0] for c in spec.channels], np.float32)
        ),
        unknown_values=[ci[n] for n in values],
        unknown_centre=_frozen(np.array([[spec.center_scale(n)[0]] for n in values], np.float64)),
        unknown_scale=_frozen(np.array([[spec.center_scale(n)[1]] for n in values], np.float64)),
        unknown_obs=[ci[c] for c in obs],
        static_centre=_frozen(np.array([c for c, _ in norm], np.float64)),
        static_scale=_frozen(np.array([sc for _, sc in norm], np.float64)),
        known_offset_ms=_frozen(rel * spec.step_ms),
    )


def _frozen(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a.flags.writeable = False  # shared by every call with the spec
    return a


def encoder_unknowns(filled: F32, obs: F32, spec: FeatureSpec) -> F32:
    """``[N, E, len(spec.unknown_reals)]`` normalised encoder inputs from filled steps and obs.

    ``filled`` is ``fill_steps``' output ``[N, C, E]``; ``obs`` the last E steps' ``[N, C, E]``.
    Each value is ``normalise``d (float64 arithmetic, stored as float32), all channels at once.
    """
    k = _constants(spec)
    n, _, e = filled.shape
    n_v = len(k.unknown_values)
    out = np.empty((n, e, n_v + len(k.unknown_obs)), dtype=np.float32)
    norm = (filled[:, k.unknown_values].astype(np.float64) - k.unknown_centre) / k.unknown_scale
    out[..., :n_v] = norm.transpose(0, 2, 1)
    out[..., n_v:] = obs[:, k.unknown_obs].transpose(0, 2, 1)
    return out


def known_inputs(origin_ms: npt.NDArray[np.int64], spec: FeatureSpec) -> F32:
    """Time of day (sin, cos) at each step's midpoint, ``[N, E + D, 2]`` (UTC is local time)."""
    mid = origin_ms.astype(np.float64)[:, None] + _constants(spec).known_offset_ms[None, :]
    day = 86_400_000.0
    phase = 2 * math.pi * (np.mod(mid, day) / day)
    out = np.empty((*phase.shape, 2), dtype=np.float32)
    out[..., 0] = np.sin(phase)
    out[..., 1] = np.cos(phase)
    return out


@dataclass(frozen=True)
class StaticInputs:
    """Per-forecast static inputs before normalisation; NaN = unknown. All arrays are ``[N]``."""

    age: F64
    flags: dict[str, BOOL]  # every name of spec.patient_flags and spec.origin_flags
    labs: dict[str, F64]  # every name of spec.labs


def static_inputs(s: StaticInputs, spec: FeatureSpec) -> F32:
    """``[N, len(spec.static_reals)]`` normalised statics (unknown -> centre, flags -> 0/1)."""
    k = _constants(spec)
    labs = set(spec.labs)
    raw = np.column_stack(
        [
            s.age if name == "age" else s.labs[name] if name in labs else s.flags[name]
            for name in spec.static_reals
        ]
    ).astype(np.float64, copy=False)
    # normalise's arithmetic; a flag's centre is 0 and scale 1, which keep it 0 or 1
    raw = np.where(np.isfinite(raw), raw, k.static_centre)
    return ((raw - k.static_centre) / k.static_scale).astype(np.float32)
