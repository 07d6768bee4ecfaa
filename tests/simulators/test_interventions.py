"""Interventions change the trajectory through the model: direction and delay dependence."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from simhelpers import clean_series

from simulators import Drug, Intervention, SimulationConfig, simulate
from simulators.conditions import CONDITION_CODE, Condition
from simulators.interventions import Schedule
from twin.signals import Signal


def _outcomes(cfg: SimulationConfig, schedule: Schedule | None) -> tuple[float, float, float]:
    crit = died = peak = 0.0
    n = 0
    for ch in simulate(cfg, schedule=schedule, signals=False):
        sel = ch.latent.started & (ch.episodes.condition == CONDITION_CODE[Condition.SEPSIS])
        n += int(sel.sum())
        crit += float(np.isfinite(ch.latent.critical_min[sel]).sum())
        died += float(np.isfinite(ch.latent.death_min[ch.episodes.row[sel]]).sum())
        peak += float(ch.latent.peak[sel].sum())
    return crit / n, died / n, peak / n


def _antibiotics_after_onset(cfg: SimulationConfig, delay_h: float) -> Schedule:
    schedule: dict[str, list[Intervention]] = {}
    for ch in simulate(cfg, signals=False):
        sel = np.nonzero(
            ch.latent.started & (ch.episodes.condition == CONDITION_CODE[Condition.SEPSIS])
        )[0]
        for e in sel:
            first = cfg.start + timedelta(minutes=float(ch.episodes.onset_min[e]) + 60 * delay_h)
            pid = cfg.patient_id(int(ch.cohort.index[ch.episodes.row[e]]))
            schedule[pid] = [
                Intervention(first + timedelta(hours=8 * k), Drug.ANTIBIOTIC) for k in range(12)
            ]
    return schedule


def test_earlier_antibiotics_mean_less_deterioration_and_death() -> None:
    cfg = SimulationConfig(
        patients=1500, days=4, seed=23, home_fraction=0.0, usual_care=False, risk={"sepsis": 20.0}
    )
    none = _outcomes(cfg, None)
    early = _outcomes(cfg, _antibiotics_after_onset(cfg, 3))
    late = _outcomes(cfg, _antibiotics_after_onset(cfg, 18))
    # (critical, died, mean peak burden): monotone in the delay of the first dose.
    assert early[0] < late[0] < none[0]
    assert early[1] <= late[1] <= none[1]
    assert early[1] < none[1]
    assert early[2] < late[2] < none[2]


def test_the_antibiotic_effect_decays_with_delay() -> None:
    from simulators.conditions import ANTIBIOTIC_DELAY_TAU_H, DRUG_CLEARANCE

    assert (
        DRUG_CLEARANCE[Drug.ANTIBIOTIC][0] * np.exp(-24 / ANTIBIOTIC_DELAY_TAU_H)
        < 0.5 * DRUG_CLEARANCE[Drug.ANTIBIOTIC][0]
    )


def test_diuretics_reverse_heart_failure_congestion() -> None:
    cfg = SimulationConfig(
        patients=800,
        days=7,
        seed=29,
        home_fraction=1.0,
        usual_care=False,
        risk={"hf_decompensation": 10.0},
    )
    schedule: dict[str, list[Intervention]] = {}
    for ch in simulate(cfg, signals=False):
        sel = np.nonzero(
            ch.latent.started
            & (ch.episodes.condition == CONDITION_CODE[Condition.HF_DECOMPENSATION])
        )[0]
        for e in sel:
            first = cfg.start + timedelta(minutes=float(ch.episodes.onset_min[e]) + 24 * 60)
            pid = cfg.patient_id(int(ch.cohort.index[ch.episodes.row[e]]))
            schedule[pid] = [
                Intervention(first + timedelta(hours=12 * k), Drug.DIURETIC, 40) for k in range(10)
            ]
    peaks = {}
    for arm, sched in (("none", None), ("diuretic", schedule)):
        chunks = list(simulate(cfg, schedule=sched, signals=False))
        sel = [(ch.latent.peak, ch.latent.critical_min, ch.episodes.condition) for ch in chunks]
        hf = CONDITION_CODE[Condition.HF_DECOMPENSATION]
        peaks[arm] = (
            np.concatenate([p[c == hf] for p, _, c in sel]),
            np.concatenate([np.isfinite(k[c == hf]) for _, k, c in sel]),
        )
    assert peaks["diuretic"][0].mean() < 0.8 * peaks["none"][0].mean()
    assert peaks["diuretic"][1].mean() < peaks["none"][1].mean()


def _paired(
    cfg: SimulationConfig, schedule: Schedule, signal: Signal, at_min: int, window: tuple[int, int]
) -> tuple[float, float]:
    """Mean difference (arm - control) of a signal before and after ``at_min``."""
    base = list(simulate(cfg))
    arm = list(simulate(cfg, schedule=schedule))
    before, after = [], []
    for b, a in zip(base, arm, strict=True):
        for row in range(b.cohort.n):
            pid = cfg.patient_id(int(b.cohort.index[row]))
            if pid not in schedule:
                continue
            tb, vb = clean_series(b, signal, row)
            ta, va = clean_series(a, signal, row)
            if tb.size == 0:
                continue
            np.testing.assert_array_equal(tb[tb <= at_min], ta[ta <= at_min])
            before.append(float(np.abs(vb[tb <= at_min] - va[ta <= at_min]).max(initial=0)))
            wb = (tb > at_min + window[0]) & (tb <= at_min + window[1])
            wa = (ta > at_min + window[0]) & (ta <= at_min + window[1])
            if wb.any() and wa.any():
                after.append(float(va[wa].mean() - vb[wb].mean()))
    return max(before), float(np.mean(after))


def test_oxygen_raises_spo2_and_changes_nothing_before() -> None:
    cfg = SimulationConfig(patients=16, days=1, seed=31)
    at = cfg.start + timedelta(hours=12)
    schedule = {
        cfg.patient_id(i): [Intervention(at, Drug.OXYGEN, 3.0)] for i in range(cfg.patients)
    }
    before, after = _paired(cfg, schedule, Signal.SPO2, 720, (5, 240))
    assert before == 0.0  # causal: nothing observed before the intervention changes
    assert after > 1.0


def test_insulin_lowers_and_glucose_raises_cgm() -> None:
    cfg = SimulationConfig(patients=40, days=1, seed=37)
    diabetic = [
        cfg.patient_id(int(i))
        for ch in simulate(cfg, signals=False)
        for i in ch.cohort.index[ch.cohort.diabetic]
    ]
    assert len(diabetic) >= 4
    at = cfg.start + timedelta(hours=10)
    before, insulin = _paired(
        cfg,
        {p: [Intervention(at, Drug.INSULIN, 6.0)] for p in diabetic},
        Signal.GLUCOSE,
        600,
        (60, 240),
    )
    assert before == 0.0
    assert insulin < -40
    before, sugar = _paired(
        cfg,
        {p: [Intervention(at, Drug.GLUCOSE, 20.0)] for p in diabetic},
        Signal.GLUCOSE,
        600,
        (15, 90),
    )
    assert before == 0.0
    assert sugar > 20


def test_vasopressor_raises_blood_pressure() -> None:
    cfg = SimulationConfig(patients=16, days=1, seed=41, home_fraction=0.0)
    at = cfg.start + timedelta(hours=6)
    schedule = {
        cfg.patient_id(i): [Intervention(at, Drug.VASOPRESSOR, 0.1)] for i in range(cfg.patients)
    }
    before, after = _paired(cfg, schedule, Signal.SYSTOLIC_BP, 360, (0, 600))
    assert before == 0.0
    assert after > 10
