"""Value ranges, circadian rhythm, activity coupling and device effects on the signals."""

from __future__ import annotations

import numpy as np
from simhelpers import clean_series

from simulators import ChunkResult, SimulationConfig, simulate
from simulators.devices import Artifact, Device
from twin.signals import SIGNALS, Signal


def _pool(chunks: list[ChunkResult], signal: Signal) -> np.ndarray:
    out = []
    for ch in chunks:
        c = ch.channels[signal]
        ok = c.sent & (c.artifact == Artifact.NONE)
        out.append(c.value[ok])
    return np.concatenate(out)


def test_clean_values_are_physiological(small: list[ChunkResult]) -> None:
    bounds = {
        Signal.HEART_RATE: (30, 200),
        Signal.SPO2: (70, 100),
        Signal.RESPIRATORY_RATE: (4, 50),
        Signal.TEMPERATURE: (33, 42),
        Signal.STEPS: (0, 180),
        Signal.GLUCOSE: (40, 400),
        Signal.SYSTOLIC_BP: (60, 230),
        Signal.DIASTOLIC_BP: (30, 140),
    }
    for sig, (lo, hi) in bounds.items():
        v = _pool(small, sig)
        assert v.size, sig
        assert lo <= v.min(), (sig, v.min())
        assert v.max() <= hi, (sig, v.max())
    hr = _pool(small, Signal.HEART_RATE)
    assert 65 < np.median(hr) < 90
    assert 94 <= np.median(_pool(small, Signal.SPO2)) <= 99
    assert 36.3 < np.median(_pool(small, Signal.TEMPERATURE)) < 37.3


def test_every_sample_has_a_twin_unit_and_the_impossible_ones_are_implausible(
    small: list[ChunkResult],
) -> None:
    for ch in small:
        for sig, c in ch.channels.items():
            spec = SIGNALS[sig]
            imp = c.sent & (c.artifact == Artifact.IMPOSSIBLE)
            ok = c.sent & (c.artifact != Artifact.IMPOSSIBLE)
            assert ((c.value[imp] < spec.plausible_min) | (c.value[imp] > spec.plausible_max)).all()
            assert ((c.value[ok] >= spec.plausible_min) & (c.value[ok] <= spec.plausible_max)).all()


def test_circadian_rhythm_and_sleep() -> None:
    chunks = list(
        simulate(
            SimulationConfig(
                patients=40,
                days=2,
                seed=21,
                risk=dict.fromkeys(
                    ("sepsis", "hf_decompensation", "copd_exacerbation", "hypoglycaemia"), 0.0
                ),
            )
        )
    )
    night, afternoon, steps_night, steps_day = [], [], [], []
    for ch in chunks:
        for row in range(ch.cohort.n):
            t, v = clean_series(ch, Signal.HEART_RATE, row)
            tod = t % 1440
            night.append(np.median(v[(tod >= 120) & (tod < 300)]))
            afternoon.append(np.median(v[(tod >= 840) & (tod < 1020)]))
            t, v = clean_series(ch, Signal.STEPS, row)
            tod = t % 1440
            steps_night.append(v[(tod >= 60) & (tod < 300)].sum())
            steps_day.append(v[(tod >= 600) & (tod < 1080)].sum())
    assert np.mean(afternoon) - np.mean(night) > 5
    assert sum(steps_day) > 20 * max(sum(steps_night), 1)


def test_heart_rate_rises_with_walking(small: list[ChunkResult]) -> None:
    diffs = []
    for ch in small:
        for row in range(ch.cohort.n):
            t, hr = clean_series(ch, Signal.HEART_RATE, row)
            ts, steps = clean_series(ch, Signal.STEPS, row)
            walking = set(ts[steps > 40].tolist())
            w = np.isin(t, list(walking))
            if w.sum() >= 5:
                diffs.append(hr[w].mean() - hr[~w].mean())
    assert len(diffs) >= 5
    assert np.median(diffs) > 8


def test_dropouts_sampling_intervals_and_artifact_rates(small: list[ChunkResult]) -> None:
    sent = total = motion = contact = flagged = art = 0
    rr5 = rr1 = 0
    for ch in small:
        hr = ch.channels[Signal.HEART_RATE]
        sent += int(hr.sent.sum())
        total += hr.sent.size
        motion += int((hr.sent & (hr.artifact == Artifact.MOTION)).sum())
        contact += int((hr.sent & (hr.artifact == Artifact.CONTACT)).sum())
        a = hr.sent & (hr.artifact != Artifact.NONE)
        art += int(a.sum())
        flagged += int((hr.flagged & a).sum())
        rr = ch.channels[Signal.RESPIRATORY_RATE]
        per_row = rr.sent.sum(axis=1) / np.maximum(hr.sent.sum(axis=1), 1)
        rr5 += int(((per_row > 0.15) & (per_row < 0.25)).sum())
        rr1 += int((per_row > 0.95).sum())
        assert (ch.channels[Signal.TEMPERATURE].every, ch.channels[Signal.GLUCOSE].every) == (15, 5)
        assert ch.channels[Signal.SYSTOLIC_BP].device is Device.CUFF
    assert 0.8 < sent / total < 0.99  # dropouts and discharges leave gaps, not holes everywhere
    assert motion > 0
    assert contact > 0
    assert 0.3 < flagged / art < 0.9  # the device flags some of its artifacts, not all
    assert rr5 > 0
    assert rr1 > 0
    assert (art / sent) < 0.02


def test_cgm_only_for_diabetics(small: list[ChunkResult]) -> None:
    for ch in small:
        cgm = ch.channels[Signal.GLUCOSE]
        np.testing.assert_array_equal(cgm.cols, np.nonzero(ch.cohort.diabetic)[0])
