"""Cohorts: demographics, comorbidities, care setting and baseline physiology, as columns.

A ``Cohort`` is a table of numpy columns, one row per patient, drawn from each patient's own
``Stream.COHORT`` generator (so any subset reproduces the full cohort's rows). Comorbidities
are correlated through a shared latent frailty and age (a Gaussian liability model): each
condition is present when ``beta*age_z + rho*frailty + sqrt(1-rho^2)*noise`` exceeds the
threshold that gives the setting's prevalence. Baselines then depend on the comorbidities.
Numbers and sources: docs/simulator.md ("Cohort").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from statistics import NormalDist
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from simulators.config import MINUTES_PER_DAY, SimulationConfig
from simulators.seeds import Stream, patient_rng, to_normal

F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]

WARD, HOME = 0, 1
SETTINGS = ("ward", "home")
COMORBIDITIES = ("heart_failure", "copd", "type1_diabetes", "type2_diabetes", "ckd", "hypertension")

# name: (ward prevalence, home prevalence, beta_age, rho_frailty). Ward: adult acute medical
# inpatients; home: a remote-monitoring programme, which enrols mostly heart failure and COPD.
_PREVALENCE: dict[str, tuple[float, float, float, float]] = {
    "heart_failure": (0.15, 0.40, 0.5, 0.5),
    "copd": (0.14, 0.35, 0.4, 0.4),
    "type1_diabetes": (0.012, 0.04, -0.3, 0.1),
    "type2_diabetes": (0.22, 0.30, 0.2, 0.4),
    "ckd": (0.20, 0.25, 0.6, 0.5),
    "hypertension": (0.55, 0.65, 0.5, 0.3),
}
_HYPERCAPNIC_SHARE = (0.30, 0.25)  # of COPD patients, with a prescribed 88-92 % SpO2 target
_N_UNIFORM = 16
_N_NORMAL = 24
_INV = NormalDist().inv_cdf


@dataclass(frozen=True, slots=True)
class Cohort:
    """One row per patient. Times of day are minutes after midnight (UTC is local time)."""

    index: I64
    setting: npt.NDArray[np.int8]  # WARD or HOME
    age: F64
    female: BOOL
    birth_days_before_start: I64
    heart_failure: BOOL
    copd: BOOL
    type1_diabetes: BOOL
    type2_diabetes: BOOL
    ckd: BOOL
    hypertension: BOOL
    hypercapnic: BOOL  # on NEWS2 SpO2 scale 2
    hr0: F64
    rr0: F64
    spo2_0: F64
    temp0: F64
    sbp0: F64
    dbp0: F64
    glucose0: F64  # mean plasma glucose, mg/dL
    steps_per_day: F64
    cadence: F64  # steps per walking minute
    active_threshold: F64  # activity latent must exceed this to walk
    hr_per_step: F64  # bpm per step/min
    rr_per_step: F64
    hr_sd: F64  # sd of the AR(1) heart-rate variability, bpm
    mid_wake: F64  # minute of day in the middle of the waking period
    wake_cos: F64  # awake while cos(2 pi (tod - mid_wake)/1440) > wake_cos
    rr_interval: I64  # minutes between respiratory-rate samples (1 or 5)
    bp_interval_h: I64  # routine cuff interval, hours
    planned_stay_min: I64  # ward: minutes to planned discharge; home: -1 (none)
    insulin_sensitivity: F64  # mg/dL per unit of rapid-acting insulin

    @property
    def n(self) -> int:
        return int(self.index.shape[0])

    @property
    def diabetic(self) -> BOOL:
        return self.type1_diabetes | self.type2_diabetes

    def take(self, rows: npt.ArrayLike) -> Self:
        return type(self)(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def columns(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _threshold(prevalence: float, beta: float) -> float:
    # The liability has variance beta^2 * var(age_z) + 1 with var(age_z) ~ 1.
    return _INV(1.0 - prevalence) * math.sqrt(1.0 + beta * beta)


def sample_cohort(config: SimulationConfig, indices: list[int]) -> Cohort:
    """Draw the patients with these indices (each from its own stream)."""
    n = len(indices)
    u = np.empty((n, _N_UNIFORM))
    z = np.empty((n, _N_NORMAL))
    for row, index in enumerate(indices):
        rng = patient_rng(config.seed, index, Stream.COHORT)
        u[row] = rng.random(_N_UNIFORM)
        z[row] = rng.standard_normal(_N_NORMAL)
    home = u[:, 0] < config.home_fraction
    s = home.astype(np.int64)

    age = np.where(home, 72 + 11 * z[:, 0], 70 + 15 * z[:, 0])
    age = np.clip(age, np.where(home, 30, 18), 98)
    age_z = (age - 70) / 15
    frailty = z[:, 1]
    has: dict[str, BOOL] = {}
    for k, name in enumerate(COMORBIDITIES):
        ward_p, home_p, beta, rho = _PREVALENCE[name]
        liability = beta * age_z + rho * frailty + math.sqrt(1 - rho * rho) * z[:, 2 + k]
        thr = np.where(home, _threshold(home_p, beta), _threshold(ward_p, beta))
        has[name] = liability > thr
    has["type2_diabetes"] &= ~has["type1_diabetes"]
    copd = has["copd"]
    hypercapnic = copd & (u[:, 1] < np.where(home, _HYPERCAPNIC_SHARE[1], _HYPERCAPNIC_SHARE[0]))
    female = u[:, 2] < 0.5
    hf, t1d, t2d = has["heart_failure"], has["type1_diabetes"], has["type2_diabetes"]
    ckd, htn = has["ckd"], has["hypertension"]

    # Baselines (docs/simulator.md "Cohort" lists the reference ranges these reproduce).
    hr0 = np.clip(76 + 3 * female + 5 * copd + 2 * (t1d | t2d) - 2 * hf + 8 * z[:, 8], 55, 105)
    rr0 = np.clip(15 + 2.5 * copd + 1.5 * hf + 0.5 * age_z + 1.5 * z[:, 9], 11, 20)
    spo2 = 97 - 0.5 * age_z - 1.5 * hf - 2.5 * copd - 3.5 * hypercapnic + 0.8 * z[:, 10]
    spo2 = np.clip(spo2, np.where(hypercapnic, 87.5, 92.0), 99.5)
    temp0 = np.clip(36.8 - 0.1 * age_z + 0.25 * z[:, 11], 36.1, 37.4)
    sbp0 = np.clip(128 + 14 * htn + 5 * age_z + 4 * ckd - 6 * hf + 12 * z[:, 12], 100, 180)
    dbp0 = np.clip(0.45 * sbp0 + 17 + 6 * z[:, 13], 50, 105)
    glucose0 = np.where(
        t1d, 160 + 30 * z[:, 14], np.where(t2d, 150 + 25 * z[:, 14], 98 + 8 * z[:, 14])
    )
    glucose0 = np.clip(glucose0, 80, 240)

    # Activity: ward inpatients walk ~1,500 steps/day, remote-monitored outpatients ~4,500.
    steps_day = np.where(home, 4500 * np.exp(0.6 * z[:, 15]), 1500 * np.exp(0.7 * z[:, 15]))
    steps_day *= np.where(hf | copd, 0.7, 1.0) * np.clip(1.3 - 0.3 * (age - 50) / 20, 0.5, 1.3)
    cadence = np.clip(70 + 12 * z[:, 16], 40, 110)
    wake_frac = np.where(home, 0.65, 0.60) + 0.03 * z[:, 17]
    wake_min = wake_frac * MINUTES_PER_DAY
    # P(active) so that the expected steps per day match; ~8 extra steps/min over cadence
    # come from the latent's overshoot above the threshold (see vitals.activity).
    p_active = np.clip(steps_day / (wake_min * (cadence + 8)), 1e-4, 0.5)
    active_threshold = to_normal(1.0 - p_active)
    mid_wake = 14.5 * 60 + 50 * z[:, 18]
    wake_cos = np.cos(np.pi * wake_frac)

    rr_interval = np.where(u[:, 3] < 0.6, 1, 5)
    bp_interval = np.where(home, 4, np.select([u[:, 4] < 0.1, u[:, 4] < 0.3], [1, 2], 4))
    planned_stay = np.where(home, -1, np.round(4 * MINUTES_PER_DAY * np.exp(0.6 * z[:, 19])))
    planned_stay = np.where(home, -1, np.maximum(planned_stay, 12 * 60))
    birth_days = np.floor(age * 365.25 + 365 * u[:, 5]).astype(np.int64)

    return Cohort(
        index=np.asarray(indices, dtype=np.int64),
        setting=s.astype(np.int8),
        age=np.floor(age),
        female=female,
        birth_days_before_start=birth_days,
        heart_failure=hf,
        copd=copd,
        type1_diabetes=t1d,
        type2_diabetes=t2d,
        ckd=ckd,
        hypertension=htn,
        hypercapnic=hypercapnic,
        hr0=hr0,
        rr0=rr0,
        spo2_0=spo2,
        temp0=temp0,
        sbp0=sbp0,
        dbp0=dbp0,
        glucose0=glucose0,
        steps_per_day=steps_day,
        cadence=cadence,
        active_threshold=active_threshold,
        hr_per_step=np.clip(0.22 + 0.05 * z[:, 20], 0.1, 0.4),
        rr_per_step=np.clip(0.05 + 0.015 * z[:, 21], 0.01, 0.1),
        hr_sd=3.5 * np.exp(0.25 * z[:, 22]),
        mid_wake=mid_wake,
        wake_cos=wake_cos,
        rr_interval=rr_interval.astype(np.int64),
        bp_interval_h=bp_interval.astype(np.int64),
        planned_stay_min=planned_stay.astype(np.int64),
        insulin_sensitivity=np.where(t1d, 45, 25) * np.exp(0.25 * z[:, 23]),
    )
