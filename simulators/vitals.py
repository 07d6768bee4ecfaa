"""True vital signs on the minute grid: baseline, circadian rhythm, activity, noise, disease.

For patient i at minute m (arrays are patient-major: one row per patient)::

    c(m)      = cos(2 pi (tod(m) - mid_wake_i) / 1440)          circadian phase, 1 mid-wake
    awake(m)  = c(m) > wake_cos_i
    x(m)      = activity latent, unit variance, correlated over 12 min (walking bouts)
    steps(m)  = awake * [x > theta_i + A(m)] * (cadence_i + 20 (x - theta_i - A(m)))
    HR(m)     = hr0 + 5 c - 6 [asleep] + g_hr * s~(m) + hr_sd * e_hr(m) + D_hr(m)
    RR(m)     = rr0 + 0.8 c + g_rr * s~(m) + 1.2 e_rr(m) + D_rr(m)
    SpO2_air  = spo2_0 - 0.8 [asleep] + 0.7 e_s(m) + D_spo2(m)
    SpO2(m)   = min(100, 100 - (100 - SpO2_air) exp(-0.3 flow(m)))     oxygen at flow L/min
    T(m)      = temp0 + 0.3 c + 0.12 e_T(m) + D_T(m)            every 15 minutes
    SBP(m)    = sbp0 + 8 c + 7 z + D_sbp(m) + min(200 vaso(m), 40)     at cuff times

``s~`` is steps smoothed over one minute (0.6 now + 0.4 before: HR follows walking with a lag),
``D_*`` and ``A`` the disease offsets from ``burden.Burdens``. The noises ``e_*`` and ``x`` are
moving sums of white noise over a window of w minutes, scaled to unit variance: autocorrelation
1 - k/w at lag k (w = 8 for HR, 4 SpO2, 4 RR, 16 activity, 4 samples for temperature), close
to an AR(1) with coefficient 1 - 1/w, and computed with a few vector passes instead of a
recursion over minutes. Parameters and sources: docs/simulator.md ("Vital signs").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.burden import Burdens, at_minutes, member, to_minutes
from simulators.cohort import Cohort
from simulators.conditions import Effect
from simulators.config import SimulationConfig
from simulators.interventions import DRUG_CODE, DoseLog, Drug
from simulators.seeds import Stream, normal_indices, patient_rng

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

TEMP_EVERY = 15
# Noise windows (samples, powers of two): HR, SpO2, RR, activity latent; temperature.
WINDOWS = (8, 4, 4, 16)
WINDOW = max(WINDOWS)
TEMP_WINDOW = 4
HR_CIRCADIAN, HR_SLEEP = 5.0, -6.0
RR_CIRCADIAN, RR_SD = 0.8, 1.2
SPO2_SLEEP, SPO2_SD = -0.8, 0.7
TEMP_CIRCADIAN, TEMP_SD = 0.3, 0.12
SBP_CIRCADIAN, SBP_SD, DBP_SD = 8.0, 7.0, 5.0
STEPS_PER_SD = 20.0
MAX_STEPS = 180.0
OXYGEN_PER_L = 0.3  # fraction of the desaturation removed per L/min: deficit * exp(-0.3 flow)
VASOPRESSOR_SBP_PER_DOSE, VASOPRESSOR_SBP_MAX = 200.0, 40.0


@dataclass(frozen=True, slots=True)
class Noise:
    """A block's intervention-independent randomness (patient-major)."""

    minute: F32  # (n, 4, T): unit-variance noise for HR, SpO2, RR and the activity latent
    temp: F32  # (n, T / 15): unit-variance temperature noise
    delay_idx: npt.NDArray[np.uint16]  # (n, T): table indices for wearable delivery delays


_U16_MEAN = np.float32(32767.5)
_U16_SD = 65536 / np.sqrt(12)  # standard deviation of a uniform 16-bit integer


def moving_noise(u16: npt.NDArray[np.uint16], window: int) -> F32:
    """Unit-variance moving sums of ``window`` (a power of two) uniform 16-bit draws.

    Along the last axis; the input has ``window - 1`` extra leading draws so every output sums
    a full window. Summing by doubling (pairs, then pairs of pairs) is a few vector passes,
    where a cumulative sum is a sequential chain. A sum of 4 or more uniforms is close to
    normal (bounded at +-sqrt(3 window) sd; heavy tails come from the artifact model).
    """
    if window & (window - 1):
        raise ValueError(f"window must be a power of two, got {window}")
    x = np.subtract(u16, _U16_MEAN, dtype=np.float32)
    step = 1
    while step < window:
        x = x[..., step:] + x[..., :-step]
        step *= 2
    x *= np.float32(1 / (np.sqrt(window) * _U16_SD))
    return x


def draw_noise(config: SimulationConfig, cohort: Cohort) -> Noise:
    minutes = config.minutes
    n_temp = -(-minutes // TEMP_EVERY)
    w = WINDOW
    per_minute = 4 * (minutes + w - 1)
    temp_len = n_temp + TEMP_WINDOW - 1
    size = per_minute + temp_len + minutes
    buf = np.empty((cohort.n, size), np.uint16)
    for r in range(cohort.n):
        rng = patient_rng(config.seed, int(cohort.index[r]), Stream.NOISE)
        buf[r] = normal_indices(rng, (size,))
    white = buf[:, :per_minute].reshape(cohort.n, 4, minutes + w - 1)
    minute = np.empty((cohort.n, 4, minutes), np.float32)
    for k, wk in enumerate(WINDOWS):
        minute[:, k] = moving_noise(white[:, k, w - wk :], wk)
    temp = moving_noise(buf[:, per_minute : per_minute + temp_len], TEMP_WINDOW)
    delay_idx = buf[:, per_minute + temp_len :].copy()
    return Noise(minute=minute, temp=temp, delay_idx=delay_idx)


def circadian(config: SimulationConfig, cohort: Cohort) -> F32:
    """(n, T) cos of the circadian phase; 1 in the middle of the patient's waking day."""
    tod = (config.start_minute_of_day + np.arange(config.minutes)) % 1440
    w = 2 * np.pi / 1440
    ct = np.cos(w * tod).astype(np.float32)[None, :]
    st = np.sin(w * tod).astype(np.float32)[None, :]
    phase = w * cohort.mid_wake
    out: F32 = np.cos(phase).astype(np.float32)[:, None] * ct
    out += np.sin(phase).astype(np.float32)[:, None] * st
    return out


def level_series(doses: DoseLog, drug: Drug, minutes: int) -> tuple[I64, F32]:
    """Chunk rows that ever got ``drug`` and its level per minute (k, T), from the minute after
    each change (a continuous drug's level holds until its next event)."""
    sel = doses.drug == DRUG_CODE[drug]
    rows = np.unique(doses.row[sel])
    out = np.zeros((rows.size, minutes), np.float32)
    for k, r in enumerate(rows):
        mine = sel & (doses.row == r)
        for at, dose in zip(doses.minute[mine], doses.dose[mine], strict=True):
            start = int(np.floor(at)) + 1
            if start < minutes:
                out[k, start:] = dose
    return rows, out


@dataclass(frozen=True, slots=True)
class Vitals:
    """True values before any device effect (rows: patients, columns: minutes)."""

    hr: F32  # (n, T)
    rr: F32
    spo2: F32
    steps: F32
    temp: F32  # (n, T / 15), at minutes 0, 15, 30, ...
    circadian: F32  # (n, T), reused for cuff readings
    awake: BOOL


def synthesize(
    config: SimulationConfig, cohort: Cohort, burdens: Burdens, doses: DoseLog, noise: Noise
) -> Vitals:
    minutes = config.minutes
    f32 = np.float32

    def col(values: F64) -> F32:
        return values.astype(np.float32)[:, None]

    c = circadian(config, cohort)
    awake = c > col(cohort.wake_cos)
    asleep = (~awake).view(np.uint8)
    n_hr, n_spo2, n_rr, n_act = (noise.minute[:, k] for k in range(4))
    rows = burdens.cols

    def offsets(effect: Effect) -> F32:
        return to_minutes(burdens.grid(effect), minutes)

    excess = n_act - col(cohort.active_threshold)
    if burdens.any:
        excess[rows] -= offsets(Effect.ACTIVITY)
    steps = excess * f32(STEPS_PER_SD)
    steps += col(cohort.cadence)
    steps *= (excess > 0) & awake
    np.clip(steps, f32(0), f32(MAX_STEPS), out=steps)
    np.rint(steps, out=steps)
    lagged = steps * f32(0.6)
    lagged[:, 1:] += steps[:, :-1] * f32(0.4)

    hr = c * f32(HR_CIRCADIAN)
    hr += col(cohort.hr0)
    hr += asleep * f32(HR_SLEEP)
    hr += lagged * col(cohort.hr_per_step)
    hr += n_hr * col(cohort.hr_sd)

    rr = c * f32(RR_CIRCADIAN)
    rr += col(cohort.rr0)
    rr += lagged * col(cohort.rr_per_step)
    rr += n_rr * f32(RR_SD)

    spo2 = n_spo2 * f32(SPO2_SD)
    spo2 += col(cohort.spo2_0)
    spo2 += asleep * f32(SPO2_SLEEP)

    if burdens.any:
        hr[rows] += offsets(Effect.HR)
        rr[rows] += offsets(Effect.RR)
        spo2[rows] += offsets(Effect.SPO2)
    o2_rows, flow = level_series(doses, Drug.OXYGEN, minutes)
    if o2_rows.size:
        deficit = f32(100) - spo2[o2_rows]
        spo2[o2_rows] = f32(100) - deficit * np.exp(-f32(OXYGEN_PER_L) * flow)
    np.minimum(spo2, f32(100), out=spo2)

    temp = c[:, ::TEMP_EVERY] * f32(TEMP_CIRCADIAN)
    temp += col(cohort.temp0)
    temp += noise.temp * f32(TEMP_SD)
    if burdens.any:
        temp[rows] += to_minutes(burdens.grid(Effect.TEMP), minutes)[:, ::TEMP_EVERY]
    return Vitals(hr=hr, rr=rr, spo2=spo2, steps=steps, temp=temp, circadian=c, awake=awake)


def cuff_values(
    cohort: Cohort,
    vitals: Vitals,
    burdens: Burdens,
    doses: DoseLog,
    minutes: I64,
    rows: I64,
    z: F64,
    minutes_total: int,
) -> tuple[F64, F64]:
    """True systolic and diastolic BP at cuff readings (``minutes[i]`` of chunk row ``rows[i]``);
    ``z`` is (k, 2) standard normals (beat-to-beat and cuff variability)."""
    sbp0 = cohort.sbp0[rows]
    sbp = sbp0 + SBP_CIRCADIAN * vitals.circadian[rows, minutes] + SBP_SD * z[:, 0]
    if burdens.any:
        where, has = member(burdens.cols, rows)
        if has.any():
            sbp[has] += at_minutes(burdens.grid(Effect.SBP), minutes[has], where[has])
    vaso_rows, vaso = level_series(doses, Drug.VASOPRESSOR, minutes_total)
    for k, r in enumerate(vaso_rows):
        sel = rows == r
        sbp[sel] += np.minimum(
            VASOPRESSOR_SBP_PER_DOSE * vaso[k, minutes[sel]], VASOPRESSOR_SBP_MAX
        )
    dbp = cohort.dbp0[rows] + 0.55 * (sbp - sbp0) + DBP_SD * z[:, 1]
    return sbp, dbp
