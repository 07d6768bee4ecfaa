"""Cohort composition, correlations, baselines and realistic base rates of episodes."""

from __future__ import annotations

import numpy as np
import pytest

from simulators import ChunkResult, SimulationConfig, simulate
from simulators.cohort import HOME, WARD, sample_cohort
from simulators.conditions import CONDITION_CODE, Condition, Outcome
from simulators.truth import OUTCOME_ORDER, patient_outcomes


@pytest.fixture(scope="module")
def cohort():  # type: ignore[no-untyped-def]
    cfg = SimulationConfig(patients=20_000, days=7, seed=1)
    return sample_cohort(cfg, list(range(cfg.patients)))


def test_prevalence_is_realistic_per_setting(cohort) -> None:  # type: ignore[no-untyped-def]
    ward = cohort.setting == WARD
    home = cohort.setting == HOME
    assert 0.25 < home.mean() < 0.35
    # Adult medical inpatients: roughly these prevalences (docs/simulator.md, "Cohort").
    for name, lo, hi in (
        ("heart_failure", 0.11, 0.19),
        ("copd", 0.10, 0.18),
        ("type2_diabetes", 0.17, 0.27),
        ("type1_diabetes", 0.004, 0.025),
        ("ckd", 0.15, 0.25),
        ("hypertension", 0.48, 0.62),
    ):
        assert lo < getattr(cohort, name)[ward].mean() < hi, name
    assert cohort.heart_failure[home].mean() > 2 * cohort.heart_failure[ward].mean()
    assert not (cohort.type1_diabetes & cohort.type2_diabetes).any()
    assert not (cohort.hypercapnic & ~cohort.copd).any()


def test_comorbidities_are_correlated(cohort) -> None:  # type: ignore[no-untyped-def]
    for a, b in (
        ("heart_failure", "ckd"),
        ("heart_failure", "hypertension"),
        ("copd", "heart_failure"),
    ):
        assert np.corrcoef(getattr(cohort, a), getattr(cohort, b))[0, 1] > 0.05, (a, b)
    old = cohort.age >= 80
    assert cohort.heart_failure[old].mean() > cohort.heart_failure[cohort.age < 60].mean()


def test_baselines_depend_on_comorbidities(cohort) -> None:  # type: ignore[no-untyped-def]
    c = cohort
    assert c.spo2_0[c.hypercapnic].mean() < 92 < c.spo2_0[~c.copd].mean()
    assert c.sbp0[c.hypertension].mean() > c.sbp0[~c.hypertension].mean() + 8
    assert (
        c.glucose0[c.type1_diabetes | c.type2_diabetes].mean() > c.glucose0[~c.diabetic].mean() + 30
    )
    assert 60 < c.hr0.mean() < 90
    assert 12 < c.rr0.mean() < 19
    assert (c.age >= 18).all()
    assert (c.age <= 98).all()
    assert np.median(c.steps_per_day[c.setting == HOME]) > 2 * np.median(
        c.steps_per_day[c.setting == WARD]
    )


def _rows_with(ch: ChunkResult, cond: Condition) -> set[int]:
    sel = ch.latent.started & (ch.episodes.condition == CONDITION_CODE[cond])
    return set(ch.episodes.row[sel].tolist())


def test_base_rates_most_patients_stay_stable() -> None:
    cfg = SimulationConfig(patients=6000, days=7, seed=2, home_fraction=0.0)
    chunks = list(simulate(cfg, signals=False))
    stable = sep = hf_pat = hf_dec = t1d = hypo = 0
    for ch in chunks:
        out = patient_outcomes(ch.cohort.n, ch.episodes, ch.latent)
        stable += int((out == OUTCOME_ORDER.index(Outcome.STABLE)).sum())
        began = ch.latent.started
        sep += len(_rows_with(ch, Condition.SEPSIS))
        hf_pat += int(ch.cohort.heart_failure.sum())
        hf_dec += len(_rows_with(ch, Condition.HF_DECOMPENSATION))
        t1d += int(ch.cohort.type1_diabetes.sum())
        hypo += int(
            (began & (ch.episodes.condition == CONDITION_CODE[Condition.HYPOGLYCAEMIA])).sum()
        )
    n = cfg.patients
    assert stable / n > 0.9  # a realistic ward, not a balanced toy set
    assert 0.015 < sep / n < 0.05  # ~2-5 % develop sepsis in a week on the ward
    assert 0.03 < hf_dec / hf_pat < 0.12  # ~5-10 % of heart-failure patients decompensate
    assert 0.3 < hypo / max(t1d, 1) < 3.0  # type 1: about one CGM-detected episode a week


def test_outcome_mix_of_sepsis_with_usual_care() -> None:
    cfg = SimulationConfig(patients=3000, days=7, seed=4, home_fraction=0.0, risk={"sepsis": 10.0})
    crit = died = total = 0
    for ch in simulate(cfg, signals=False):
        sel = ch.latent.started & (ch.episodes.condition == CONDITION_CODE[Condition.SEPSIS])
        total += int(sel.sum())
        crit += int(np.isfinite(ch.latent.critical_min[sel]).sum())
        died += int(np.isfinite(ch.latent.death_min[ch.episodes.row[sel]]).sum())
    assert total > 300
    assert 0.1 < crit / total < 0.4
    assert 0.03 < died / total < 0.2
