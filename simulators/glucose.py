"""Glucose for patients with diabetes, on the CGM's 5-minute grid.

Not a compartment model (see simglucose / UVA-Padova for that); a pattern that reproduces
what a CGM trace looks like and responds to the drugs and episodes we simulate::

    P(t) = G0 + sum_meals a * carbs * h(t - t_meal) + g(t) + I(t) + R(t)
    G(t) = 30 + (P(t) - 30) * exp(-1.52 b(t))

``h`` is a gamma-shaped meal response peaking after 60 min (net of the patient's own meal
insulin, so ``a`` is the net excursion per gram), ``g`` glycaemic variability (moving-sum noise
as in ``vitals``),
``I`` the effect of extra insulin doses (ISF * units * [1 - (1 + s/55) e^(-s/55)] e^(-s/360),
rapid-acting insulin's action curve with a slow return), ``R`` rescue glucose
(3.5 mg/dL per g * (1 - e^(-s/15)) e^(-s/120)) and ``b`` the hypoglycaemia burden. CGM
readings add sensor noise and are clipped to the sensor's 40-400 mg/dL range (devices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.burden import Burdens, member
from simulators.cohort import Cohort
from simulators.conditions import Effect
from simulators.config import SimulationConfig
from simulators.grid import STEP_MIN
from simulators.interventions import DRUG_CODE, DoseLog, Drug
from simulators.seeds import Stream, normal_indices, normal_table, patient_rng
from simulators.vitals import moving_noise

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

CGM_EVERY = STEP_MIN  # the CGM grid is the latent grid
MEALS = ((7.5 * 60, 40.0), (12.5 * 60, 45.0), (18.5 * 60, 45.0))  # (mean, sd) minute of day
CARBS_MEAN, CARBS_SD = 50.0, 15.0
MEAL_PEAK_MIN = 60.0
EXCURSION_PER_G = (1.3, 1.1)  # mg/dL per g, type 1 / type 2
VARIABILITY_SD = (18.0, 10.0)  # mg/dL, type 1 / type 2
VARIABILITY_WINDOW = 8  # samples: correlated over ~40 minutes
INSULIN_PEAK_MIN, INSULIN_RETURN_MIN = 55.0, 360.0
RESCUE_PER_G, RESCUE_ABSORB_MIN, RESCUE_CLEAR_MIN = 3.5, 15.0, 120.0
TRUE_RANGE = (20.0, 600.0)
# Hypoglycaemia pulls glucose towards this floor: G = F + (G - F) exp(-c b), with c chosen so
# that burden 1 (the critical event) is level-2 hypoglycaemia, 54 mg/dL, from 140 mg/dL.
HYPO_FLOOR = 30.0


@dataclass(frozen=True, slots=True)
class Glucose:
    rows: I64  # chunk rows of the patients with diabetes (the CGM wearers)
    true: F32  # (len(rows), T / 5) mg/dL
    sensor_z: F32  # (len(rows), T / 5) standard normals for sensor noise
    delay_idx: npt.NDArray[np.uint16]  # (len(rows), T / 5) delivery delay table indices


def _meal_kernel() -> F64:
    s = np.arange(0, 6 * 60, CGM_EVERY, dtype=np.float64) / MEAL_PEAK_MIN
    return np.asarray(s * np.exp(1 - s))


def insulin_effect(elapsed_min: F64) -> F64:
    """Fraction of ISF * units lowered ``elapsed_min`` after a dose (0 before it)."""
    e = np.maximum(elapsed_min, 0)
    s = e / INSULIN_PEAK_MIN
    return np.asarray((1 - (1 + s) * np.exp(-s)) * np.exp(-e / INSULIN_RETURN_MIN))


def rescue_effect(elapsed_min: F64) -> F64:
    """mg/dL per gram of glucose ``elapsed_min`` after it was taken (0 before)."""
    e = np.maximum(elapsed_min, 0)
    return np.asarray(
        RESCUE_PER_G * (1 - np.exp(-e / RESCUE_ABSORB_MIN)) * np.exp(-e / RESCUE_CLEAR_MIN)
    )


def simulate_glucose(
    config: SimulationConfig, cohort: Cohort, burdens: Burdens, doses: DoseLog
) -> Glucose:
    rows = np.nonzero(cohort.diabetic)[0]
    n_grid = -(-config.minutes // CGM_EVERY)
    n_days = -(-config.minutes // 1440) + 1
    t = np.arange(n_grid, dtype=np.float64) * CGM_EVERY
    true = np.empty((rows.size, n_grid), np.float32)
    idx = np.empty((rows.size, 3, n_grid + VARIABILITY_WINDOW - 1), np.uint16)
    kernel = _meal_kernel()
    day0 = -config.start_minute_of_day
    for k, r in enumerate(rows):
        rng = patient_rng(config.seed, int(cohort.index[r]), Stream.GLUCOSE)
        meal_z = rng.standard_normal((n_days, len(MEALS), 2))
        skip = rng.random((n_days, len(MEALS))) < 0.08
        idx[k] = normal_indices(rng, (3, n_grid + VARIABILITY_WINDOW - 1))
        impulses = np.zeros(n_grid)
        for d in range(n_days):
            for m, (meal_at, meal_sd) in enumerate(MEALS):
                at = day0 + d * 1440 + meal_at + meal_sd * meal_z[d, m, 0]
                j = int(np.floor(at / CGM_EVERY))
                if skip[d, m] or not 0 <= j < n_grid:
                    continue
                impulses[j] += max(5.0, CARBS_MEAN + CARBS_SD * meal_z[d, m, 1])
        per_g = EXCURSION_PER_G[0 if cohort.type1_diabetes[r] else 1]
        true[k] = cohort.glucose0[r] + per_g * np.convolve(impulses, kernel)[:n_grid]
    table = normal_table()
    variability = moving_noise(idx[:, 0], VARIABILITY_WINDOW)
    sd = np.where(cohort.type1_diabetes[rows], VARIABILITY_SD[0], VARIABILITY_SD[1])
    true += variability * sd.astype(np.float32)[:, None]
    _add_drugs(true, rows, cohort, doses, t)
    if burdens.any and rows.size:
        hypo = burdens.grid(Effect.GLUCOSE)[:, :n_grid]
        where, found = member(burdens.cols, rows)
        floor = np.float32(HYPO_FLOOR)
        for hit in np.nonzero(found)[0]:
            true[hit] = floor + (true[hit] - floor) * np.exp(-hypo[where[hit]])
    np.clip(true, TRUE_RANGE[0], TRUE_RANGE[1], out=true)
    return Glucose(
        rows=rows,
        true=true,
        sensor_z=table[idx[:, 1, :n_grid]],
        delay_idx=idx[:, 2, :n_grid].copy(),
    )


def _add_drugs(true: F32, rows: I64, cohort: Cohort, doses: DoseLog, t: F64) -> None:
    col_of = {int(r): k for k, r in enumerate(rows)}
    for i in range(doses.n):
        k = col_of.get(int(doses.row[i]))
        if k is None:
            continue
        elapsed = t - doses.minute[i]
        if doses.drug[i] == DRUG_CODE[Drug.INSULIN]:
            isf = cohort.insulin_sensitivity[rows[k]]
            true[k] -= (isf * doses.dose[i] * insulin_effect(elapsed)).astype(np.float32)
        elif doses.drug[i] == DRUG_CODE[Drug.GLUCOSE]:
            true[k] += (doses.dose[i] * rescue_effect(elapsed)).astype(np.float32)
