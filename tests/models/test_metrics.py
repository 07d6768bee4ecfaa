"""The paired, patient-level bootstrap of an AUROC difference that the evaluation reports."""

from __future__ import annotations

import numpy as np

from models import metrics as mx


def _cohort(patients: int, rows: int, seed: int) -> tuple[np.ndarray, ...]:
    """Patients with correlated rows: a patient-level risk drives labels and scores, and the
    poor score's error is the patient's own (the same on every row)."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(patients), rows)
    frailty = rng.normal(size=patients)[patient]
    y = rng.random(patient.size) < 1 / (1 + np.exp(-(frailty * 2 - 3)))
    good = frailty + rng.normal(scale=0.5, size=patient.size)
    poor = frailty + rng.normal(scale=2.0, size=patients)[patient]  # wrong per patient
    return y, np.round(good, 1), np.round(poor, 1), patient  # rounded: many ties


def test_weighted_auroc_is_the_auroc_of_the_repeated_rows() -> None:
    y, good, _, _ = _cohort(50, 8, seed=1)
    score = mx._SortedScore(y, good)
    assert score.auroc(np.ones(y.size)) == mx.auroc(y, good)
    w = np.random.default_rng(2).integers(0, 4, y.size)
    rows = np.repeat(np.arange(y.size), w)
    assert abs(score.auroc(w) - mx.auroc(y[rows], good[rows])) < 1e-12


def test_difference_and_interval() -> None:
    y, good, poor, patient = _cohort(300, 10, seed=3)
    out = mx.auroc_difference(y, good, poor, patient, reps=400)
    assert out["difference"] == mx.auroc(y, good) - mx.auroc(y, poor)
    lo, hi = out["ci95"]
    assert 0 < lo < out["difference"] < hi  # a clearly better score: the interval excludes 0
    same = mx.auroc_difference(y, good, good, patient, reps=50)
    assert same["difference"] == 0
    assert same["ci95"] == [0.0, 0.0]
    # reproducible (fixed seed), and resampling whole patients is wider than resampling rows
    assert mx.auroc_difference(y, good, poor, patient, reps=400) == out
    rows = mx.auroc_difference(y, good, poor, np.arange(y.size), reps=400)
    assert hi - lo > rows["ci95"][1] - rows["ci95"][0]


def test_more_patients_narrow_the_interval() -> None:
    widths = []
    for n in (100, 1600):
        y, good, poor, patient = _cohort(n, 10, seed=4)
        lo, hi = mx.auroc_difference(y, good, poor, patient, reps=300)["ci95"]
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2
