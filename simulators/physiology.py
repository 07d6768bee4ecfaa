"""Latent disease dynamics: the burden of every episode, stepped over the horizon.

Pure vector code over the episodes of a cohort chunk. The burden model is in
``simulators.conditions``; each step uses its exact solution for constant coefficients
(``burden_step``), so the fast hypoglycaemia episodes are as stable as the slow heart-failure
ones at the 5-minute step. Drugs act through the clearance ``u``; usual care (``care``) and the
given dose log decide when.

Causality: a dose at minute ``m`` acts from grid step ``floor(m / 5) + 1`` on, so the first
burden value it changes is at grid point ``floor(m / 5) + 2``, strictly after ``m`` even after
linear interpolation to minutes. No sample observed at or before ``m`` can depend on it, which
is what lets a policy re-simulate a patient after a decision and keep everything delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from simulators.care import UsualCare
from simulators.cohort import Cohort
from simulators.conditions import (
    ANTIBIOTIC_DELAY_TAU_H,
    ANTIBIOTIC_RAMP_H,
    APPARENT,
    B0,
    CONDITION_CODE,
    CRITICAL,
    DRUG_CLEARANCE,
    HAZARD_FROM,
    RESOLVED,
    Condition,
    Episodes,
)
from simulators.config import SimulationConfig
from simulators.grid import DT_H, NEVER, STEP_MIN, step_minutes
from simulators.interventions import DRUG_CODE, DRUG_ORDER, DRUGS, DoseLog, Drug

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_N_DRUGS = len(DRUG_ORDER)
_ABX = DRUG_CODE[Drug.ANTIBIOTIC]
_GLUCOSE = DRUG_CODE[Drug.GLUCOSE]
_DIURETIC = DRUG_CODE[Drug.DIURETIC]
_STEROID = DRUG_CODE[Drug.STEROID]
_CONTINUOUS = [DRUG_CODE[d] for d in DRUG_ORDER if DRUGS[d].continuous]
# A ward patient whose episode resolved stays this long before the planned discharge applies.
_DISCHARGE_AFTER_RESOLVED_STEPS = 12 * 60 // STEP_MIN
_MILESTONES = ("apparent", "treated", "critical", "resolved")


def burden_step(b: F64, k: F64, cap: F64, u: F64, dt_h: float) -> F64:
    """Exact solution after ``dt_h`` of db/dt = k b (1 - b/cap) - u b, coefficients constant."""
    r = k - u
    x = r * dt_h
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(np.abs(x) > 1e-12, np.expm1(x) / r, dt_h)
    return np.asarray(b * np.exp(x) / (1.0 + (k / cap) * b * frac))


@dataclass(frozen=True, slots=True)
class Latent:
    """Burden trajectories (every ``STEP_MIN``) and what happened, in minutes (NaN: never)."""

    burden: F32  # (grid points, episodes)
    started: npt.NDArray[np.bool_]  # False: the patient died or left before the onset
    apparent_min: F64
    recognized_min: F64
    treated_min: F64  # first step covered by a drug that clears this condition
    critical_min: F64
    resolved_min: F64
    peak: F64
    death_min: F64  # per patient
    discharge_min: F64  # per patient (ward)
    doses: DoseLog  # everything given: schedule, policy and usual care

    def end_min(self, horizon: int) -> F64:
        """Per patient: the minute monitoring stops (death, discharge or the horizon)."""
        return np.fmin(np.fmin(self.death_min, self.discharge_min), float(horizon))

    def take(self, rows: I64, episodes: npt.NDArray[np.int64]) -> Latent:
        """The patients ``rows`` (renumbered 0..) and their ``episodes`` (indices)."""
        keep = np.isin(self.doses.row, rows)
        doses = self.doses.take(np.nonzero(keep)[0])
        doses = replace(doses, row=np.searchsorted(rows, doses.row))
        e = episodes
        return Latent(
            burden=self.burden[:, e],
            started=self.started[e],
            apparent_min=self.apparent_min[e],
            recognized_min=self.recognized_min[e],
            treated_min=self.treated_min[e],
            critical_min=self.critical_min[e],
            resolved_min=self.resolved_min[e],
            peak=self.peak[e],
            death_min=self.death_min[rows],
            discharge_min=self.discharge_min[rows],
            doses=doses,
        )


def _clearance_table(episodes: Episodes) -> F64:
    """(episodes, drugs): clearance per unit of drug strength, response included."""
    table = np.zeros((episodes.n, _N_DRUGS))
    cond = episodes.condition.astype(np.int64)
    for drug, per_condition in DRUG_CLEARANCE.items():
        table[:, DRUG_CODE[drug]] = np.asarray(per_condition)[cond] * episodes.response
    copd = CONDITION_CODE[Condition.COPD_EXACERBATION]
    table[:, _ABX] = np.where((cond == copd) & ~episodes.variant, 0.0, table[:, _ABX])
    return table


def _strength(drug: int, dose: F64) -> F64:
    if drug == _DIURETIC:
        return np.sqrt(np.maximum(dose, 0) / 40.0)
    if drug == _STEROID:
        return np.minimum(dose / 30.0, 1.5)
    if drug == _GLUCOSE:
        return (dose >= 10.0).astype(np.float64)
    return (dose > 0).astype(np.float64)


class _Pharmacy:
    """Which drugs cover each patient at each step, and how strongly."""

    def __init__(self, n_pat: int) -> None:
        self.action = np.array([DRUGS[d].action_min // STEP_MIN for d in DRUG_ORDER], np.int64)
        self.cover_until = np.full((n_pat, _N_DRUGS), -1, np.int64)
        self.strength = np.zeros((n_pat, _N_DRUGS))

    def give(self, rows: I64, drugs: I64, doses: F64, step: int) -> None:
        for d in np.unique(drugs):
            sel = drugs == d
            r = rows[sel]
            self.cover_until[r, d] = np.maximum(self.cover_until[r, d], step + self.action[d])
            self.strength[r, d] = _strength(int(d), doses[sel])


def _discharge(
    s: int,
    planned: I64,
    discharge: I64,
    death: I64,
    has_ep: npt.NDArray[np.bool_],
    live: npt.NDArray[np.bool_],
    resolved: I64,
    row: I64,
) -> npt.NDArray[np.bool_]:
    """Discharge ward patients due at step ``s`` unless an episode keeps them; returns the
    episodes of the patients who left (to freeze)."""
    due = (planned <= s) & (discharge == NEVER) & (death == NEVER) & has_ep
    if not due.any():
        return np.zeros(row.shape, bool)
    busy_ep = live & ((resolved == NEVER) | (s < resolved + _DISCHARGE_AFTER_RESOLVED_STEPS))
    leave = due & ~(np.bincount(row[busy_ep], minlength=due.shape[0]) > 0)
    discharge[leave] = s
    return np.asarray(discharge[row] <= s)


def run_latent(
    config: SimulationConfig, cohort: Cohort, episodes: Episodes, given: DoseLog
) -> Latent:
    """Step every episode's burden over the horizon under ``given`` doses plus usual care."""
    horizon = config.minutes
    n_grid = -(-horizon // STEP_MIN)
    n_pat, n_ep = cohort.n, episodes.n
    planned = np.where(cohort.planned_stay_min >= 0, -(-cohort.planned_stay_min // STEP_MIN), NEVER)
    death = np.full(n_pat, NEVER, np.int64)
    discharge = np.full(n_pat, NEVER, np.int64)
    row = episodes.row
    has_ep = np.zeros(n_pat, bool)
    has_ep[row] = True
    discharge[~has_ep] = planned[~has_ep]
    burden = np.zeros((n_grid + 1, n_ep), np.float32)
    mark = {k: np.full(n_ep, NEVER, np.int64) for k in _MILESTONES}
    started = np.zeros(n_ep, bool)
    peak = np.zeros(n_ep)
    # Continuous drugs do not touch the burden: a schedule's go straight to the log.
    cont = np.isin(given.drug, _CONTINUOUS)
    bolus = given.take(np.nonzero(~cont)[0])
    logs = [given.take(np.nonzero(cont)[0]), bolus]
    care = UsualCare(cohort, episodes) if config.usual_care else None

    if n_ep:
        onset = -(-episodes.onset_min // STEP_MIN)
        k_base = episodes.speed.copy()
        clear = _clearance_table(episodes)
        pharmacy = _Pharmacy(n_pat)
        first_abx = np.full(n_ep, NEVER, np.int64)
        b = np.zeros(n_ep)
        hazard = np.zeros(n_ep)
        frozen = np.zeros(n_ep, bool)
        # Given boluses act from grid step floor(minute / STEP_MIN) + 1.
        g_given = np.floor(bolus.minute / STEP_MIN).astype(np.int64) + 1
        order = np.argsort(g_given, kind="stable")
        g_given = g_given[order]
        b_row, b_drug, b_dose = bolus.row[order], bolus.drug[order], bolus.dose[order]
        ptr = 0
        queued: tuple[I64, I64, F64] | None = None
        first = min(
            int(onset.min()),
            int(g_given.min()) if g_given.size else NEVER,
            int(planned[has_ep].min()),
        )
        last_onset = int(onset.max())
        for j in range(max(0, first - 1), n_grid):
            if ptr < g_given.size and g_given[ptr] <= j:
                end = int(np.searchsorted(g_given, j, side="right"))
                pharmacy.give(b_row[ptr:end], b_drug[ptr:end], b_dose[ptr:end], j)
                ptr = end
            if queued is not None:
                pharmacy.give(*queued, j)
                queued = None
            new = (onset == j) & ~started & ~frozen
            if new.any():
                gone = (death[row] <= j) | (discharge[row] <= j)
                go = new & ~gone
                started |= go
                b[go] = B0
                burden[j, go] = B0
                frozen |= new & gone  # the patient left before the episode began
            active = started & ~frozen
            if not active.any():
                frozen |= _discharge(
                    j + 1,
                    planned,
                    discharge,
                    death,
                    has_ep,
                    started & ~frozen,
                    mark["resolved"],
                    row,
                )
                if j >= last_onset and ptr >= g_given.size:
                    break
                continue
            covered = pharmacy.cover_until[row] > j
            drug_u = clear * pharmacy.strength[row] * covered
            first_abx[active & covered[:, _ABX] & (first_abx == NEVER)] = j
            delay_h = np.maximum(first_abx - onset, 0) * DT_H
            ramp = np.clip((j - first_abx + 1) * DT_H / ANTIBIOTIC_RAMP_H, 0.0, 1.0)
            drug_u[:, _ABX] *= np.exp(-delay_h / ANTIBIOTIC_DELAY_TAU_H) * ramp
            u = episodes.natural_clearance + drug_u.sum(axis=1)
            untreated = active & (mark["treated"] == NEVER) & (mark["resolved"] == NEVER)
            mark["treated"][untreated & (drug_u.max(axis=1) > 0)] = j
            k = np.where(j * STEP_MIN < episodes.insult_end_min, k_base, 0.0)
            b = np.where(active, burden_step(b, k, episodes.severity, u, DT_H), b)
            s = j + 1
            burden[s] = b
            for name, hit in (("critical", b >= CRITICAL), ("apparent", b >= APPARENT)):
                mark[name][active & hit & (mark[name] == NEVER)] = s
            peak = np.maximum(peak, np.where(active, b, 0.0))
            res = active & (mark["resolved"] == NEVER) & (b < RESOLVED) & (peak >= 2 * RESOLVED)
            mark["resolved"][res] = s
            k_base[res] = 0.0  # a resolved episode is over: the insult does not come back
            hazard += (
                np.where(active, episodes.death_hazard * np.maximum(b - HAZARD_FROM, 0), 0) * DT_H
            )
            dying = active & (
                (b >= episodes.death_threshold) | (hazard >= episodes.death_resistance)
            )
            if dying.any():
                dead = np.unique(row[dying])
                death[dead] = np.minimum(death[dead], s)
                frozen |= death[row] <= s
            if care is not None:
                queued = care.step(s, b, active, ~frozen, mark["critical"])
            frozen |= _discharge(
                s, planned, discharge, death, has_ep, started & ~frozen, mark["resolved"], row
            )
    if care is not None:
        logs.extend(care.logs)
    recognized = care.recognized if care is not None else np.full(n_ep, NEVER, np.int64)
    return Latent(
        burden=burden,
        started=started,
        apparent_min=step_minutes(mark["apparent"], horizon),
        recognized_min=step_minutes(recognized, horizon),
        treated_min=step_minutes(mark["treated"], horizon),
        critical_min=step_minutes(mark["critical"], horizon),
        resolved_min=step_minutes(mark["resolved"], horizon),
        peak=peak,
        death_min=step_minutes(death, horizon),
        discharge_min=step_minutes(discharge, horizon),
        doses=DoseLog.concat(logs),
    )
