"""Acute conditions: who gets which episode, when, how fast and how severe.

Every episode is a latent *burden* ``b(t) >= 0`` (0 = baseline, 1 = the critical event) that
follows, from onset,

    db/dt = k(t) * b * (1 - b / K) - u(t) * b,        b(onset) = B0,

with growth rate ``k`` (the condition's speed, active only during the insult window), plateau
``K`` (severity: an untreated episode with ``K > 1`` reaches the critical event) and clearance
``u(t) = natural clearance + drug effects``. The critical event is the first time ``b >= 1``;
death the first time ``b`` reaches the condition's death threshold. ``simulators.physiology``
steps this; here are the parameters, drawn per episode from ``Stream.CONDITIONS``, and the
effect table that turns burden into signal offsets. Numbers and sources: docs/simulator.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import IntEnum, StrEnum
from typing import Self

import numpy as np
import numpy.typing as npt

from simulators.cohort import HOME, Cohort
from simulators.config import SimulationConfig
from simulators.interventions import Drug
from simulators.seeds import Stream, patient_rng, to_normal

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

B0 = 0.05  # burden at onset: sub-clinical
CRITICAL = 1.0
APPARENT = 0.5  # "clinically apparent" (organ dysfunction) label threshold
RESOLVED = 0.08  # below this after having exceeded 2 * RESOLVED: resolved
HAZARD_FROM = CRITICAL  # the death hazard accrues only beyond the critical event


class Condition(StrEnum):
    SEPSIS = "sepsis"
    HF_DECOMPENSATION = "hf_decompensation"
    COPD_EXACERBATION = "copd_exacerbation"
    HYPOGLYCAEMIA = "hypoglycaemia"


CONDITION_ORDER: tuple[Condition, ...] = tuple(Condition)
CONDITION_CODE: dict[Condition, int] = {c: i for i, c in enumerate(CONDITION_ORDER)}


class Outcome(StrEnum):
    STABLE = "stable"  # no episode
    RECOVERED = "recovered"  # burden back below RESOLVED, never critical
    ONGOING = "ongoing"  # no critical event, not resolved by the end of the horizon
    CRITICAL = "critical"  # deteriorated to the critical event, alive at the end
    DIED = "died"


@dataclass(frozen=True, slots=True)
class ConditionSpec:
    condition: Condition
    weekly_risk: tuple[float, float]  # P(onset within a week), (ward, home); recurrent: rate
    recurrent: bool
    speed_median: float  # k, 1/h
    speed_sigma: float
    severity_median: float  # K
    severity_sigma: float
    insult_hours: float  # growth acts this long after onset (inf: until treated)
    insult_sigma: float
    natural_clearance: float  # 1/h
    death_threshold: float  # burden at which death is immediate
    death_hazard: float  # 1/h per unit of burden above HAZARD_FROM (scaled by age)
    recognition: tuple[float, float]  # usual care notices at b in U(lo, hi)
    delay_median_min: float  # recognition -> first treatment
    delay_sigma: float
    variant_share: float  # sepsis: hypothermic; copd: infective


SPECS: dict[Condition, ConditionSpec] = {
    s.condition: s
    for s in (
        ConditionSpec(
            Condition.SEPSIS,
            (0.035, 0.006),
            False,
            0.25,
            0.5,
            1.2,
            0.3,
            math.inf,
            0.0,
            0.02,
            1.8,
            0.35,
            (0.45, 0.85),
            180,
            0.7,
            0.15,
        ),
        ConditionSpec(
            Condition.HF_DECOMPENSATION,
            (0.07, 0.035),
            False,
            0.06,
            0.35,
            1.15,
            0.25,
            math.inf,
            0.0,
            0.0,
            1.8,
            0.15,
            (0.4, 0.8),
            240,
            0.6,
            0.0,
        ),
        ConditionSpec(
            Condition.COPD_EXACERBATION,
            (0.05, 0.05),
            False,
            0.1,
            0.4,
            1.4,
            0.3,
            72,
            0.4,
            0.015,
            1.8,
            0.15,
            (0.35, 0.7),
            180,
            0.6,
            0.5,
        ),
        ConditionSpec(
            Condition.HYPOGLYCAEMIA,
            (1.5, 1.5),
            True,
            4.0,
            0.35,
            1.15,
            0.35,
            2.0,
            0.35,
            0.4,
            2.5,
            0.05,
            (0.35, 0.6),
            15,
            0.6,
            0.0,
        ),
    )
}


class Effect(IntEnum):
    """Columns of ``EFFECTS``: per unit of burden unless noted."""

    HR = 0  # bpm
    RR = 1  # /min
    SPO2 = 2  # % (negative: desaturation)
    TEMP = 3  # Cel
    SBP = 4  # mm[Hg]
    ACTIVITY = 5  # raises the walking threshold (in sd of the activity latent)
    LACTATE = 6  # mmol/L per b^2
    WBC = 7  # 10*3/uL
    CRP = 8  # mg/L (acts through a 12 h lag)
    CREATININE = 9  # fractional rise
    GLUCOSE = 10  # glucose pulled to its floor: 30 + (G - 30) exp(-GLUCOSE * b)
    CONFUSION = 11  # burden at which consciousness drops below Alert


# Rows: CONDITION_ORDER, then the variant rows (hypothermic/leukopenic sepsis, infective COPD).
_E = Effect
EFFECTS = np.zeros((6, len(Effect)))
_ROWS = {
    "sepsis": {
        _E.HR: 35,
        _E.RR: 11,
        _E.SPO2: -5,
        _E.TEMP: 2.2,
        _E.SBP: -38,
        _E.ACTIVITY: 2.5,
        _E.LACTATE: 3.5,
        _E.WBC: 9,
        _E.CRP: 220,
        _E.CREATININE: 0.7,
        _E.CONFUSION: 0.9,
    },
    "hf_decompensation": {
        _E.HR: 18,
        _E.RR: 9,
        _E.SPO2: -6,
        _E.SBP: -3,
        _E.ACTIVITY: 2.0,
        _E.LACTATE: 0.8,
        _E.CREATININE: 0.35,
        _E.CONFUSION: 1.2,
    },
    "copd_exacerbation": {
        _E.HR: 20,
        _E.RR: 10,
        _E.SPO2: -7,
        _E.TEMP: 0.3,
        _E.SBP: 3,
        _E.ACTIVITY: 2.0,
        _E.LACTATE: 0.5,
        _E.WBC: 1,
        _E.CRP: 15,
        _E.CONFUSION: 1.15,
    },
    "hypoglycaemia": {
        _E.HR: 14,
        _E.TEMP: -0.2,
        _E.SBP: 6,
        _E.ACTIVITY: 1.0,
        _E.GLUCOSE: 1.52,
        _E.CONFUSION: 1.1,
    },
    "sepsis_hypothermic": {
        _E.HR: 35,
        _E.RR: 11,
        _E.SPO2: -5,
        _E.TEMP: -1.8,
        _E.SBP: -38,
        _E.ACTIVITY: 2.5,
        _E.LACTATE: 3.5,
        _E.WBC: -4,
        _E.CRP: 220,
        _E.CREATININE: 0.7,
        _E.CONFUSION: 0.9,
    },
    "copd_infective": {
        _E.HR: 22,
        _E.RR: 10,
        _E.SPO2: -7,
        _E.TEMP: 1.0,
        _E.SBP: 3,
        _E.ACTIVITY: 2.0,
        _E.LACTATE: 0.5,
        _E.WBC: 6,
        _E.CRP: 80,
        _E.CONFUSION: 1.15,
    },
}
for _row, _name in enumerate(_ROWS):
    for _col, _val in _ROWS[_name].items():
        EFFECTS[_row, _col] = _val
VARIANT_ROW = {CONDITION_CODE[Condition.SEPSIS]: 4, CONDITION_CODE[Condition.COPD_EXACERBATION]: 5}

# Clearance (1/h) a covering drug adds, per condition (rows) and drug (the dict keys).
# Antibiotics: CLEARANCE * response * exp(-delay_h / ANTIBIOTIC_DELAY_TAU_H), where delay_h is
# hours from onset to the first covering dose: the later, the weaker (Kumar 2006: each hour of
# delay in septic shock costs survival). The effect ramps in over ANTIBIOTIC_RAMP_H.
DRUG_CLEARANCE: dict[Drug, tuple[float, float, float, float]] = {
    Drug.ANTIBIOTIC: (0.55, 0.0, 0.25, 0.0),  # COPD: infective exacerbations only
    Drug.DIURETIC: (0.0, 0.25, 0.0, 0.0),  # per sqrt(dose / 40 mg)
    Drug.STEROID: (0.0, 0.0, 0.07, 0.0),
    Drug.GLUCOSE: (0.0, 0.0, 0.0, 6.0),  # if dose >= 10 g
}
ANTIBIOTIC_DELAY_TAU_H = 18.0
ANTIBIOTIC_RAMP_H = 2.0
# Uniforms per episode slot: onset wait, speed, severity, insult, response, delay, variant,
# uncovered organism, recognition level, death resistance. Fixed, so streams stay aligned
# whatever is eligible.
_DRAWS = 10
_HYPO_SLOTS = 8
_SINGLE = (Condition.SEPSIS, Condition.HF_DECOMPENSATION, Condition.COPD_EXACERBATION)


@dataclass(frozen=True, slots=True)
class Episodes:
    """One row per drawn episode (onset inside the horizon); parameters, not outcomes."""

    row: I64  # patient row in the cohort chunk
    condition: npt.NDArray[np.int8]  # CONDITION_CODE
    variant: BOOL
    onset_min: I64
    speed: F64  # k, 1/h
    severity: F64  # K
    insult_end_min: F64  # growth stops here (inf: never)
    natural_clearance: F64
    response: F64  # multiplies drug clearance (organism sensitivity, adherence)
    recognition: F64  # burden at which usual care notices
    delay_min: F64  # recognition -> first treatment
    death_threshold: F64
    death_hazard: F64  # per hour per unit burden above HAZARD_FROM, age-scaled
    death_resistance: F64  # Exp(1): death when the accrued hazard exceeds it

    @property
    def n(self) -> int:
        return int(self.row.shape[0])

    def take(self, rows: npt.ArrayLike) -> Self:
        return type(self)(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def effect_row(self) -> I64:
        """Row of ``EFFECTS`` for each episode (the variant row where it applies)."""
        out = self.condition.astype(np.int64)
        for code, vrow in VARIANT_ROW.items():
            out = np.where((self.condition == code) & self.variant, vrow, out)
        return out


def _eligible(condition: Condition, cohort: Cohort) -> npt.NDArray[np.bool_]:
    if condition is Condition.HF_DECOMPENSATION:
        return cohort.heart_failure
    if condition is Condition.COPD_EXACERBATION:
        return cohort.copd
    if condition is Condition.HYPOGLYCAEMIA:
        return cohort.type1_diabetes
    return np.ones(cohort.n, dtype=bool)


def hazard_multiplier(condition: Condition, cohort: Cohort) -> F64:
    """Per-patient multiplier on the condition's base hazard (risk factors)."""
    m = np.ones(cohort.n)
    if condition is Condition.SEPSIS:
        m *= np.where(cohort.age >= 75, 1.4, 1.0) * np.where(cohort.diabetic, 1.3, 1.0)
        m *= np.where(cohort.ckd, 1.4, 1.0) * np.where(cohort.copd | cohort.heart_failure, 1.2, 1.0)
    return m


def _asleep(cohort: Cohort, rows: I64, minute_of_day: F64) -> BOOL:
    phase = 2 * np.pi * (minute_of_day - cohort.mid_wake[rows]) / 1440
    return np.asarray(np.cos(phase) <= cohort.wake_cos[rows])


def draw_episodes(config: SimulationConfig, cohort: Cohort) -> Episodes:
    """Draw every patient's episodes whose onset falls inside the horizon."""
    n = cohort.n
    n_slots = len(_SINGLE) + _HYPO_SLOTS
    u = np.empty((n, n_slots, _DRAWS))
    for r in range(n):
        rng = patient_rng(config.seed, int(cohort.index[r]), Stream.CONDITIONS)
        u[r] = rng.random((n_slots, _DRAWS))
    horizon = config.minutes
    parts: list[dict[str, np.ndarray]] = []
    for slot in range(n_slots):
        cond = _SINGLE[slot] if slot < len(_SINGLE) else Condition.HYPOGLYCAEMIA
        spec = SPECS[cond]
        d = u[:, slot, :]
        risk = np.where(cohort.setting == HOME, spec.weekly_risk[1], spec.weekly_risk[0])
        if spec.recurrent:
            rate_per_min = risk / (7 * 1440)
        else:
            rate_per_min = -np.log1p(-np.minimum(risk, 0.999)) / (7 * 1440)
        rate_per_min = rate_per_min * hazard_multiplier(cond, cohort)
        rate_per_min = rate_per_min * config.risk_multiplier(cond.value)
        rate_per_min = np.where(_eligible(cond, cohort), rate_per_min, 0.0)
        with np.errstate(divide="ignore"):
            wait = -np.log1p(-d[:, 0]) / rate_per_min
        if slot < len(_SINGLE):
            onset = wait
        else:
            # Recurrent episodes: arrivals at least 6 h apart (counter-regulation recovers).
            k = slot - len(_SINGLE)
            prev = parts[-1]["_onset_all"] if k > 0 else np.full(n, -6 * 60.0)
            onset = prev + 6 * 60 + wait
        part: dict[str, np.ndarray] = {"_onset_all": onset}
        keep = onset < horizon
        rows = np.nonzero(keep)[0]
        z = to_normal(d[keep])
        onset_k = np.floor(onset[keep]).astype(np.int64)
        insult = spec.insult_hours * np.exp(spec.insult_sigma * z[:, 3]) * 60
        delay = spec.delay_median_min * np.exp(spec.delay_sigma * z[:, 5])
        if cond is Condition.HYPOGLYCAEMIA:
            # Nocturnal hypoglycaemia is noticed late: the CGM alarm has to wake the patient.
            tod = (config.start_minute_of_day + onset_k) % 1440
            delay = np.where(_asleep(cohort, rows, tod.astype(np.float64)), delay * 4, delay)
        lo, hi = spec.recognition
        response = np.exp(0.3 * z[:, 4])
        if cond is Condition.SEPSIS:
            # About one in eight organisms is not covered by the empirical antibiotic.
            response = np.where(d[keep, 7] < 0.12, 0.15, response)
        part.update(
            row=rows.astype(np.int64),
            condition=np.full(rows.shape, CONDITION_CODE[cond], dtype=np.int8),
            variant=d[keep, 6] < spec.variant_share,
            onset_min=onset_k,
            speed=spec.speed_median * np.exp(spec.speed_sigma * z[:, 1]),
            severity=spec.severity_median * np.exp(spec.severity_sigma * z[:, 2]),
            insult_end_min=onset_k + insult,
            natural_clearance=np.full(rows.shape, spec.natural_clearance),
            response=response,
            recognition=lo + (hi - lo) * d[keep, 8],
            delay_min=delay,
            death_threshold=np.full(rows.shape, spec.death_threshold),
            # Older patients die of the same burden sooner (about x2 per 23 years).
            death_hazard=spec.death_hazard * np.exp(0.03 * (cohort.age[rows] - 70)),
            death_resistance=-np.log1p(-d[keep, 9]),
        )
        parts.append(part)
    names = [f.name for f in fields(Episodes)]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in names}
    order = np.lexsort((cat["condition"], cat["onset_min"], cat["row"]))
    return Episodes(**{k: cat[k][order] for k in names})
