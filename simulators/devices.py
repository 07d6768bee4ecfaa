"""Devices: what reaches the stream from the true signals, and when.

Sampling: the wearable gives HR, SpO2 and steps every minute, respiratory rate every 1 or 5
minutes (per device model) and temperature every 15; the CGM glucose every 5 minutes; the
cuff BP at obs rounds every 1-4 h (hourly while an episode is recognised and unresolved; at
home, 4-hourly while awake). Device effects, in order: quantisation to the display resolution;
motion artifacts while walking (cadence lock or a jump in HR, a spurious SpO2 dip); contact
artifacts at any time; impossible sentinel readings (HR 0, SpO2 127, ...) that the twin's
plausibility check must catch; dropouts (loose sensor, shower, flat battery, home charging);
the end of monitoring at discharge or death. The device flags a share of its artifacts with
``quality: artifact``. Delivery: one upload packet per device per sample time with a
log-normal gateway delay (capped, so out-of-order delivery is bounded), and a small rate of
packets delivered twice (gateway retries). Numbers: docs/simulator.md ("Devices").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum, StrEnum

import numpy as np
import numpy.typing as npt

from simulators.burden import Burdens
from simulators.cohort import HOME, Cohort
from simulators.config import DeviceConfig, SimulationConfig
from simulators.glucose import CGM_EVERY, Glucose
from simulators.physiology import Latent
from simulators.seeds import Stream, lognormal_table, patient_rng, to_normal
from simulators.vitals import TEMP_EVERY, Vitals, cuff_values
from twin.signals import Signal

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
BOOL = npt.NDArray[np.bool_]


class Device(StrEnum):
    WEARABLE = "wearable"
    CGM = "cgm"
    CUFF = "cuff"


class Artifact(IntEnum):
    """Ground truth of what is wrong with a reading (0: nothing)."""

    NONE = 0
    MOTION = 1
    CONTACT = 2
    IMPOSSIBLE = 3


# (display min, display max, decimals) of each channel's device.
RESOLUTION: dict[Signal, tuple[float, float, int]] = {
    Signal.HEART_RATE: (25, 250, 0),
    Signal.SPO2: (50, 100, 0),
    Signal.RESPIRATORY_RATE: (4, 60, 0),
    Signal.TEMPERATURE: (30, 43, 1),
    Signal.STEPS: (0, 250, 0),
    Signal.GLUCOSE: (40, 400, 0),  # CGMs report "LOW" / "HIGH" outside; we send the limit
    Signal.SYSTOLIC_BP: (50, 260, 0),
    Signal.DIASTOLIC_BP: (25, 160, 0),
}
# Sentinel values a device sends when it has no reading; all outside twin.signals' plausible
# ranges, so ``VitalSample.artifact()`` must flag every one of them.
IMPOSSIBLE: dict[Signal, tuple[float, ...]] = {
    Signal.HEART_RATE: (0.0, 511.0),
    Signal.SPO2: (0.0, 127.0),
    Signal.RESPIRATORY_RATE: (0.0, 127.0),
    Signal.TEMPERATURE: (0.0, 99.9),
    Signal.STEPS: (65535.0,),
    Signal.GLUCOSE: (0.0,),
    Signal.SYSTOLIC_BP: (0.0, 511.0),
    Signal.DIASTOLIC_BP: (0.0, 511.0),
}
CGM_GAPS_PER_DAY = 0.3
CGM_DELAY_SIGMA = 1.0
_MAX_WALK_FRACTION = 0.15  # motion candidates are drawn at this rate and kept while walking


@dataclass(slots=True)
class Channel:
    """One signal's readings in a block: rows are patients (``cols`` maps them to chunk rows),
    columns sample slots. ``minute`` is (1, m) for a fixed grid or (k, m) for per-patient
    times (cuff; -1 where there is no slot). Only slots with ``sent`` were transmitted."""

    signal: Signal
    device: Device
    cols: I64
    minute: I32
    value: F32
    sent: BOOL
    artifact: npt.NDArray[np.int8]
    flagged: BOOL
    delay_ms: I32
    dup_idx: tuple[I64, I64]  # (row, slot) of readings delivered twice
    dup_delay_ms: I64

    def times(self) -> I32:
        return np.broadcast_to(self.minute, self.value.shape)

    @property
    def every(self) -> int:
        """Minutes between slots of a fixed grid (0 for per-patient times)."""
        if self.minute.shape[0] != 1:
            return 0
        return int(self.minute[0, 1] - self.minute[0, 0]) if self.minute.shape[1] > 1 else 1


def _delay_table(median_s: float, sigma: float, cap_s: float) -> I32:
    return np.round(lognormal_table(median_s * 1000, sigma, cap_s * 1000)).astype(np.int32)


def _quantise(values: F32, signal: Signal) -> F32:
    lo, hi, decimals = RESOLUTION[signal]
    np.clip(values, lo, hi, out=values)
    if decimals:
        scale = np.float32(10**decimals)
        values *= scale
        np.rint(values, out=values)
        values /= scale
    else:
        np.rint(values, out=values)
    return values


def _channel(
    signal: Signal, device: Device, values: F32, minute: I32, cols: I64, delay: I32
) -> Channel:
    return Channel(
        signal=signal,
        device=device,
        cols=cols,
        minute=minute,
        value=_quantise(values, signal),
        sent=np.zeros(0, bool),
        artifact=np.zeros(values.shape, np.int8),
        flagged=np.zeros(values.shape, bool),
        delay_ms=delay,
        dup_idx=(np.zeros(0, np.int64), np.zeros(0, np.int64)),
        dup_delay_ms=np.zeros(0, np.int64),
    )


def observe(
    config: SimulationConfig,
    cohort: Cohort,
    latent: Latent,
    burdens: Burdens,
    vitals: Vitals,
    glucose: Glucose,
    delay_idx: npt.NDArray[np.uint16],
) -> dict[Signal, Channel]:
    """Apply sampling, artifacts, dropouts and delivery to the true signals of a block."""
    dev = config.devices
    minutes, n = config.minutes, cohort.n
    all_rows = np.arange(n, dtype=np.int64)
    grid = np.arange(minutes, dtype=np.int32)[None, :]
    wear_delay = _delay_table(
        dev.wearable_delay_median_s, dev.wearable_delay_sigma, dev.wearable_max_delay_s
    )[delay_idx]
    w = Device.WEARABLE
    ch: dict[Signal, Channel] = {
        Signal.HEART_RATE: _channel(Signal.HEART_RATE, w, vitals.hr, grid, all_rows, wear_delay),
        Signal.SPO2: _channel(Signal.SPO2, w, vitals.spo2, grid, all_rows, wear_delay),
        Signal.RESPIRATORY_RATE: _channel(
            Signal.RESPIRATORY_RATE, w, vitals.rr, grid, all_rows, wear_delay
        ),
        Signal.STEPS: _channel(Signal.STEPS, w, vitals.steps.copy(), grid, all_rows, wear_delay),
        Signal.TEMPERATURE: _channel(
            Signal.TEMPERATURE,
            w,
            vitals.temp,
            grid[:, ::TEMP_EVERY],
            all_rows,
            wear_delay[:, ::TEMP_EVERY],
        ),
    }
    cgm_delay = _delay_table(dev.cgm_delay_median_s, CGM_DELAY_SIGMA, dev.cgm_max_delay_s)
    # CGM error: ~4 mg/dL plus 4 % of the reading (MARD ~ 9 % against blood glucose).
    cgm = glucose.true + glucose.sensor_z * (np.float32(4.0) + np.float32(0.04) * glucose.true)
    ch[Signal.GLUCOSE] = _channel(
        Signal.GLUCOSE,
        Device.CGM,
        cgm,
        grid[:, ::CGM_EVERY],
        glucose.rows,
        cgm_delay[glucose.delay_idx],
    )
    _cuff(config, cohort, latent, burdens, vitals, ch)

    draws = _draw(
        config,
        cohort,
        cgm_diabetic=np.isin(np.arange(n), glucose.rows),
        cuff_slots=ch[Signal.SYSTOLIC_BP].value.shape[1],
    )
    wear_gaps = _wearable_gaps(config, cohort, draws)
    _artifacts(ch, vitals.steps, draws, dev)
    cgm_row = np.full(n, -1, np.int64)
    cgm_row[glucose.rows] = np.arange(glucose.rows.size)
    for sig, c in ch.items():
        if c.device is Device.CUFF:
            continue
        rows, u = draws[f"impossible_{sig.value}"]
        rows = rows if c.device is Device.WEARABLE else cgm_row[rows]
        ok = rows >= 0
        _set(
            c,
            rows[ok],
            _slot(u[ok, 0], c.value.shape[1]),
            _sentinel(sig, u[ok, 1]),
            Artifact.IMPOSSIBLE,
            u[ok, 2] < dev.device_flag_fraction / 2,
        )
    rows, u = draws["impossible_cuff"]
    cuff = ch[Signal.SYSTOLIC_BP]
    slot = _slot(u[:, 0], cuff.value.shape[1])
    ok = cuff.minute[rows, slot] >= 0
    for sig in (Signal.SYSTOLIC_BP, Signal.DIASTOLIC_BP):  # the cuff reports 0 when it fails
        _set(
            ch[sig],
            rows[ok],
            slot[ok],
            np.zeros(int(ok.sum())),
            Artifact.IMPOSSIBLE,
            np.zeros(int(ok.sum()), bool),
        )
    rows, u = draws["cgm_gap"]
    cgm_gaps = [
        (int(cgm_row[r]), a * minutes, a * minutes + 15 + 75 * b)
        for r, a, b in zip(rows, u[:, 0], u[:, 1], strict=True)
    ]
    dups: dict[Device, tuple[I64, I64, I64]] = {}
    rows, u = draws["duplicate_wearable"]
    dups[Device.WEARABLE] = (
        rows,
        _slot(u[:, 0], minutes),
        (30_000 + 270_000 * u[:, 1]).astype(np.int64),
    )
    rows, u = draws["duplicate_cgm"]
    m5 = ch[Signal.GLUCOSE].value.shape[1]
    dups[Device.CGM] = (
        cgm_row[rows],
        _slot(u[:, 0], m5),
        (30_000 + 270_000 * u[:, 1]).astype(np.int64),
    )

    end = latent.end_min(minutes)
    wear = _sent_mask(n, minutes, 1, wear_gaps, end)
    rr_mask = wear.copy()
    five = np.nonzero(cohort.rr_interval == 5)[0]
    if five.size:
        thin = np.arange(minutes) % 5 != 0
        rr_mask[np.ix_(five, np.nonzero(thin)[0])] = False
    for sig in (Signal.HEART_RATE, Signal.SPO2, Signal.STEPS):
        ch[sig].sent = wear
    ch[Signal.RESPIRATORY_RATE].sent = rr_mask
    ch[Signal.TEMPERATURE].sent = np.ascontiguousarray(wear[:, ::TEMP_EVERY])
    cg = ch[Signal.GLUCOSE]
    cg.sent = _sent_mask(
        cg.value.shape[0], cg.value.shape[1], CGM_EVERY, cgm_gaps, end[glucose.rows]
    )
    for sig in (Signal.SYSTOLIC_BP, Signal.DIASTOLIC_BP):
        c = ch[sig]
        c.sent = (c.minute >= 0) & (c.minute < end[:, None])
    for device, found in dups.items():
        _duplicates(ch, device, found, dev)
    return ch


# Sparse device events drawn per patient: Poisson counts, then uniforms per event (columns).
_EVENTS: dict[str, int] = {
    "dropout": 3,
    "motion": 5,
    "contact_heart_rate": 4,
    "contact_spo2": 4,
    **{
        f"impossible_{s.value}": 3
        for s in IMPOSSIBLE
        if s not in (Signal.SYSTOLIC_BP, Signal.DIASTOLIC_BP)
    },
    "impossible_cuff": 1,
    "duplicate_wearable": 2,
    "duplicate_cgm": 2,
    "cgm_gap": 2,
}
Draws = dict[str, tuple[I64, F64]]  # event kind -> (patient row of each event, uniforms)


def _draw(config: SimulationConfig, cohort: Cohort, cgm_diabetic: BOOL, cuff_slots: int) -> Draws:
    """Every patient's sparse device events, from its own stream: three calls per patient."""
    dev = config.devices
    minutes = config.minutes
    days = minutes / 1440
    n_days = math.ceil(days)
    base = {
        "dropout": dev.dropouts_per_day * days,
        "motion": dev.motion_artifact_rate * _MAX_WALK_FRACTION * minutes,
        "contact_heart_rate": dev.contact_artifact_rate * minutes,
        "contact_spo2": dev.contact_artifact_rate * minutes,
        "impossible_cuff": dev.impossible_rate * 20 * cuff_slots,
        "duplicate_wearable": dev.duplicate_rate * minutes,
    }
    per_channel = {
        Signal.TEMPERATURE: -(-minutes // TEMP_EVERY),
        Signal.GLUCOSE: -(-minutes // CGM_EVERY),
    }
    for sig in IMPOSSIBLE:
        if sig not in (Signal.SYSTOLIC_BP, Signal.DIASTOLIC_BP):
            base[f"impossible_{sig.value}"] = dev.impossible_rate * per_channel.get(sig, minutes)
    cgm = {
        "duplicate_cgm": dev.duplicate_rate * -(-minutes // CGM_EVERY),
        "cgm_gap": CGM_GAPS_PER_DAY * days,
    }
    kinds = list(_EVENTS)
    widths = np.array([_EVENTS[k] for k in kinds])
    rows: dict[str, list[I64]] = {k: [] for k in kinds}
    us: dict[str, list[F64]] = {k: [] for k in kinds}
    charge = np.empty((cohort.n, n_days, 3))
    for i in range(cohort.n):
        rng = patient_rng(config.seed, int(cohort.index[i]), Stream.DEVICES)
        lam = np.array([base.get(k, cgm.get(k, 0.0) if cgm_diabetic[i] else 0.0) for k in kinds])
        counts = rng.poisson(lam)
        u = rng.random(int(counts @ widths) + n_days * 3)
        charge[i] = u[len(u) - n_days * 3 :].reshape(n_days, 3)
        at = 0
        for k, c, w in zip(kinds, counts, widths, strict=True):
            if c:
                rows[k].append(np.full(c, i, np.int64))
                us[k].append(u[at : at + c * w].reshape(c, w))
                at += c * w
    out: Draws = {}
    for k, w in zip(kinds, widths, strict=True):
        out[k] = (
            np.concatenate(rows[k]) if rows[k] else np.zeros(0, np.int64),
            np.concatenate(us[k]) if us[k] else np.zeros((0, w)),
        )
    out["charge"] = (np.arange(cohort.n, dtype=np.int64), charge.reshape(cohort.n, -1))
    return out


def _slot(u: F64, slots: int) -> I64:
    return np.minimum((u * slots).astype(np.int64), slots - 1)


def _sentinel(sig: Signal, u: F64) -> F64:
    values = np.asarray(IMPOSSIBLE[sig])
    return np.asarray(values[np.minimum((u * values.size).astype(np.int64), values.size - 1)])


def _set(c: Channel, rows: I64, slots: I64, values: F64, kind: Artifact, flags: BOOL) -> None:
    c.value[rows, slots] = values.astype(np.float32)
    c.artifact[rows, slots] = int(kind)
    c.flagged[rows, slots] = flags


def _wearable_gaps(
    config: SimulationConfig, cohort: Cohort, draws: Draws
) -> list[tuple[int, float, float]]:
    """Dropouts (mostly short: strap, shower; a quarter long: flat battery) and, at home,
    morning charging on most days."""
    minutes = config.minutes
    rows, u = draws["dropout"]
    long_ = u[:, 1] < 0.25
    dur = np.where(long_, 240, 20) * np.exp(np.where(long_, 0.5, 0.8) * to_normal(u[:, 2]))
    start = u[:, 0] * minutes
    gaps = [(int(r), a, a + d) for r, a, d in zip(rows, start, dur, strict=True)]
    _, charge = draws["charge"]
    for i in np.nonzero(cohort.setting == HOME)[0]:
        for d in range(charge.shape[1] // 3):
            c0, c1, c2 = charge[i, 3 * d : 3 * d + 3]
            if c0 < 0.6:
                a = (
                    d * 1440
                    - config.start_minute_of_day
                    + cohort.mid_wake[i]
                    - 6 * 60
                    + 120 * (c1 - 0.5)
                )
                gaps.append((int(i), a, a + 30 + 30 * c2))
    return gaps


def _artifacts(ch: dict[Signal, Channel], steps: F32, draws: Draws, dev: DeviceConfig) -> None:
    """Motion artifacts while walking (candidates kept where the patient walked) and contact
    artifacts at any time, on HR and SpO2."""
    hr_ch, spo2_ch = ch[Signal.HEART_RATE], ch[Signal.SPO2]
    minutes = hr_ch.value.shape[1]
    rows, u = draws["motion"]
    pos = _slot(u[:, 0], minutes)
    keep = steps[rows, pos] > 0
    rows, pos, u = rows[keep], pos[keep], u[keep]
    flag = u[:, 4] < dev.device_flag_fraction
    hr = hr_ch.value[rows, pos].astype(np.float64)
    cadence_lock = steps[rows, pos] * (0.95 + 0.15 * u[:, 2])
    hr_art = np.where(u[:, 1] < 0.5, cadence_lock, hr + 20 + 40 * u[:, 2])
    sp = u[:, 3] < 0.5
    spo2 = spo2_ch.value[rows[sp], pos[sp]] - np.rint(4 + 11 * u[sp, 2])
    _set(hr_ch, rows, pos, np.rint(np.clip(hr_art, 25, 250)), Artifact.MOTION, flag)
    _set(spo2_ch, rows[sp], pos[sp], np.maximum(spo2, 50), Artifact.MOTION, flag[sp])
    for sig in (Signal.HEART_RATE, Signal.SPO2):
        rows, u = draws[f"contact_{sig.value}"]
        pos = _slot(u[:, 0], minutes)
        cur = ch[sig].value[rows, pos].astype(np.float64)
        if sig is Signal.HEART_RATE:
            bad = np.clip(
                cur * np.where(u[:, 1] < 0.5, 0.5 + 0.2 * u[:, 2], 1.4 + 0.4 * u[:, 2]), 25, 250
            )
        else:
            bad = np.maximum(cur - 8 - 17 * u[:, 2], 50)
        _set(ch[sig], rows, pos, np.rint(bad), Artifact.CONTACT, u[:, 3] < dev.device_flag_fraction)


def _sent_mask(
    k: int, slots: int, every: int, gaps: list[tuple[int, float, float]], end: F64
) -> BOOL:
    """True where the device was on: not in a gap, before the end of monitoring."""
    sent = np.ones((k, slots), bool)
    for row, a, b in gaps:
        lo, hi = max(0, math.ceil(a / every)), max(0, math.ceil(b / every))
        sent[row, lo:hi] = False
    for ended in np.nonzero(end < slots * every)[0]:
        sent[ended, math.ceil(end[ended] / every) :] = False
    return sent


def _duplicates(
    ch: dict[Signal, Channel], device: Device, found: tuple[I64, I64, I64], dev: DeviceConfig
) -> None:
    row, minute_or_slot, extra = found
    cap_ms = int(
        1000 * (dev.wearable_max_delay_s if device is Device.WEARABLE else dev.cgm_max_delay_s)
    )
    for c in ch.values():
        if c.device is not device:
            continue
        if device is Device.WEARABLE:  # one packet per minute carries every wearable channel
            on_grid = minute_or_slot % c.every == 0
            r, s, e = row[on_grid], minute_or_slot[on_grid] // c.every, extra[on_grid]
        else:
            r, s, e = row, minute_or_slot, extra
        sent = c.sent[r, s]
        r, s, e = r[sent], s[sent], e[sent]
        c.dup_idx = (r, s)
        c.dup_delay_ms = np.minimum(c.delay_ms[r, s].astype(np.int64) + e, cap_ms)


def _cuff(
    config: SimulationConfig,
    cohort: Cohort,
    latent: Latent,
    burdens: Burdens,
    vitals: Vitals,
    ch: dict[Signal, Channel],
) -> None:
    """Obs rounds: ward every 1-4 h from 02:00 (hourly while an episode is being treated),
    home every 4 h while awake. Readings are charted up to ``charting_max_delay_s`` later."""
    minutes, n = config.minutes, cohort.n
    hours = -(-minutes // 60)
    hour_of_day = (config.start_minute_of_day // 60 + np.arange(hours)) % 24
    escalated = np.zeros((n, hours), bool)
    if burdens.any:
        eps = burdens.episode_index
        rec, res = latent.recognized_min[eps], latent.resolved_min[eps]
        for r, a, b in zip(burdens.rows, rec, res, strict=True):
            if np.isfinite(a):
                stop = hours if not np.isfinite(b) else int(b // 60) + 1
                escalated[r, int(a // 60) + 1 : stop] = True
    routine = ((hour_of_day[None, :] - 2) % cohort.bp_interval_h[:, None]) == 0
    u = np.empty((n, hours, 5))  # jitter, missed round, two variability normals, charting delay
    for i in range(n):
        u[i] = patient_rng(config.seed, int(cohort.index[i]), Stream.CUFF).random((hours, 5))
    jitter = np.round(20 * (u[:, :, 0] - 0.5)).astype(np.int64)
    at = np.minimum(np.arange(hours)[None, :] * 60 + 30 + jitter, minutes - 1)
    home = (cohort.setting == HOME)[:, None]
    awake = vitals.awake[np.arange(n)[:, None], at]
    take = (routine | escalated) & (u[:, :, 1] >= 0.05) & (~home | awake)
    minute: I32 = np.where(take, at, -1).astype(np.int32)
    r, c = np.nonzero(take)
    z = np.stack([to_normal(u[r, c, 2]), to_normal(u[r, c, 3])], axis=1)
    sbp, dbp = cuff_values(
        cohort,
        vitals,
        burdens,
        latent.doses,
        at[r, c],
        r.astype(np.int64),
        z,
        minutes,
    )
    max_ms = config.devices.charting_max_delay_s * 1000
    delay: I32 = np.round(60_000 + u[:, :, 4] * (max_ms - 60_000)).astype(np.int32)
    for sig, vals in ((Signal.SYSTOLIC_BP, sbp), (Signal.DIASTOLIC_BP, dbp)):
        v = np.zeros((n, hours), np.float32)
        v[r, c] = vals
        ch[sig] = _channel(sig, Device.CUFF, v, minute, np.arange(n, dtype=np.int64), delay)
