"""Laboratory tests: which are drawn when, their values, turnaround and delivery.

Ward patients get admission bloods at ~1 h and morning bloods at 06:00 +- 30 min (WBC,
creatinine, glucose, CRP). Recognising an episode triggers its panel 15-45 min later (sepsis:
lactate, WBC, creatinine, glucose, CRP, with lactate repeated at +3 h and +6 h); a critical
event triggers a critical panel. Values are a per-patient baseline plus the episodes' effects
(lactate with b^2, CRP with a 12 h lag) with assay noise; results are released after the test's
turnaround and delivered 5-60 s later. Randomness is keyed by what it belongs to, because the
number of labs depends on the course.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.burden import Burdens, at_minutes, member
from simulators.cohort import HOME, Cohort
from simulators.conditions import CONDITION_CODE, Condition, Effect, Episodes
from simulators.config import SimulationConfig
from simulators.glucose import CGM_EVERY, Glucose
from simulators.physiology import Latent
from simulators.seeds import Stream, keyed_uniform, patient_rng, to_normal
from twin.signals import Signal

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Lab:
    signal: Signal
    loinc: str
    display: str
    unit: str  # UCUM
    turnaround_min: tuple[float, float]
    decimals: int


LABS: tuple[Lab, ...] = (
    Lab(Signal.LACTATE, "2524-7", "Lactate [Moles/volume] in Blood", "mmol/L", (10, 30), 1),
    Lab(
        Signal.WBC,
        "6690-2",
        "Leukocytes [#/volume] in Blood by Automated count",
        "10*3/uL",
        (45, 120),
        1,
    ),
    Lab(
        Signal.CREATININE,
        "2160-0",
        "Creatinine [Mass/volume] in Serum or Plasma",
        "mg/dL",
        (60, 180),
        2,
    ),
    Lab(
        Signal.GLUCOSE_LAB,
        "2345-7",
        "Glucose [Mass/volume] in Serum or Plasma",
        "mg/dL",
        (60, 180),
        0,
    ),
    Lab(
        Signal.CRP,
        "1988-5",
        "C reactive protein [Mass/volume] in Serum or Plasma",
        "mg/L",
        (60, 180),
        1,
    ),
)
LACT, WBC, CREAT, GLU, CRP = range(5)
ROUTINE_PANEL = (WBC, CREAT, GLU, CRP)
RECOGNITION_PANEL = {
    CONDITION_CODE[Condition.SEPSIS]: (LACT, WBC, CREAT, GLU, CRP),
    CONDITION_CODE[Condition.HF_DECOMPENSATION]: (CREAT, WBC),
    CONDITION_CODE[Condition.COPD_EXACERBATION]: (WBC, CRP),
    CONDITION_CODE[Condition.HYPOGLYCAEMIA]: (GLU,),
}
CRITICAL_PANEL = (LACT, WBC, CREAT, CRP)
_CRP_LAG_MIN = 12 * 60


CV = (0.05, 0.03, 0.04, 0.03, 0.05)  # assay coefficient of variation, per lab


@dataclass(frozen=True, slots=True)
class LabDraws:
    row: I64
    lab: I64  # index into LABS
    minute: F64  # specimen collection
    value: F64
    issued_min: F64
    received_ms: I64


@dataclass(frozen=True, slots=True)
class _Baseline:
    lactate: F64
    wbc: F64
    creatinine: F64
    crp: F64


def _baselines(config: SimulationConfig, cohort: Cohort) -> _Baseline:
    z = np.empty((cohort.n, 4))
    for r in range(cohort.n):
        z[r] = patient_rng(config.seed, int(cohort.index[r]), Stream.EHR).standard_normal(4)
    creat = np.where(cohort.ckd, 2.0 * np.exp(0.3 * z[:, 2]), 0.85 * np.exp(0.2 * z[:, 2]))
    return _Baseline(
        lactate=np.exp(0.25 * z[:, 0]) + 0.2 * cohort.heart_failure,
        wbc=7.0 * np.exp(0.25 * z[:, 1]),
        creatinine=creat * np.where(cohort.female, 0.85, 1.0),
        crp=np.where(cohort.copd, 8.0, 4.0) * np.exp(0.6 * z[:, 3]),
    )


def draw_labs(
    config: SimulationConfig,
    cohort: Cohort,
    episodes: Episodes,
    latent: Latent,
    burdens: Burdens,
    glucose: Glucose,
    end: F64,
) -> LabDraws:
    """Every lab drawn while the patient is monitored, with its value and timing."""
    idx = cohort.index

    def uf(*keys: npt.ArrayLike) -> F64:
        return keyed_uniform(config.seed, Stream.EHR, *keys)

    ward = np.nonzero(cohort.setting != HOME)[0]
    draws: list[tuple[I64, F64, int]] = []  # (rows, collection minutes, lab)
    # Ward admission bloods at ~1 h, morning bloods at ~06:00.
    adm = 60 + 60 * (uf(idx[ward], 10) - 0.5)
    first_day = -config.start_minute_of_day + 6 * 60
    mornings = [first_day + d * 1440 for d in range(-(-config.minutes // 1440) + 1)]
    for lab in ROUTINE_PANEL:
        draws.append((ward, adm, lab))
        for d, morning in enumerate(mornings):
            at = morning + 60 * (uf(idx[ward], 11, d) - 0.5)
            ok = at >= 120
            draws.append((ward[ok], at[ok], lab))
    started = np.nonzero(latent.started)[0]
    for e in started:
        pr = int(episodes.row[e])
        cond = int(episodes.condition[e])
        if cond == CONDITION_CODE[Condition.HYPOGLYCAEMIA] and cohort.setting[pr] == HOME:
            continue
        rec = latent.recognized_min[e]
        if np.isfinite(rec):
            at = rec + 15 + 30 * float(uf(idx[pr], 12, e))
            for lab in RECOGNITION_PANEL[cond]:
                draws.append((np.array([pr]), np.array([at]), lab))
            if cond == CONDITION_CODE[Condition.SEPSIS]:
                for k, later in enumerate((180.0, 360.0)):
                    draws.append(
                        (
                            np.array([pr]),
                            np.array([at + later + 20 * float(uf(idx[pr], 13, e, k))]),
                            LACT,
                        )
                    )
        crit = latent.critical_min[e]
        if np.isfinite(crit):
            at = crit + 10 + 20 * float(uf(idx[pr], 14, e))
            for lab in CRITICAL_PANEL:
                draws.append((np.array([pr]), np.array([at]), lab))
    if not draws:
        empty = np.zeros(0)
        return LabDraws(
            empty.astype(np.int64),
            empty.astype(np.int64),
            empty,
            empty,
            empty,
            empty.astype(np.int64),
        )
    lab_of = np.concatenate([np.full(d[0].shape, d[2], np.int64) for d in draws])
    r = np.concatenate([d[0] for d in draws]).astype(np.int64)
    m = np.concatenate([d[1] for d in draws])
    keep = (m >= 0) & (m < end[r]) & (m < config.minutes)
    r, m, lab_of = r[keep], np.floor(m[keep]), lab_of[keep]
    values = _values(config, cohort, burdens, glucose, r, m, lab_of)
    mi = m.astype(np.int64)
    noise = to_normal(uf(idx[r], 20, lab_of, mi))
    cv = np.asarray(CV)[lab_of]
    values = values * (1 + cv * noise)
    tat = np.array([lab.turnaround_min for lab in LABS])[lab_of]
    issued = m + tat[:, 0] + (tat[:, 1] - tat[:, 0]) * uf(idx[r], 21, lab_of, mi)
    received = np.round(issued * 60_000 + 1000 * (5 + 55 * uf(idx[r], 22, lab_of, mi))).astype(
        np.int64
    )
    decimals = np.array([lab.decimals for lab in LABS])[lab_of]
    values = np.round(values * 10.0**decimals) / 10.0**decimals
    return LabDraws(r, lab_of, m, values, issued, received)


def _values(
    config: SimulationConfig,
    cohort: Cohort,
    burdens: Burdens,
    glucose: Glucose,
    r: I64,
    m: F64,
    lab: I64,
) -> F64:
    base = _baselines(config, cohort)
    mi = m.astype(np.int64)
    v = np.zeros(r.shape)
    v = np.where(lab == LACT, base.lactate[r], v)
    v = np.where(lab == WBC, base.wbc[r], v)
    v = np.where(lab == CREAT, base.creatinine[r], v)
    v = np.where(lab == CRP, base.crp[r], v)
    day_to_day = 8 * to_normal(keyed_uniform(config.seed, Stream.EHR, 23, cohort.index[r], mi))
    v = np.where(lab == GLU, cohort.glucose0[r] + day_to_day, v)
    diab, has_cgm = member(glucose.rows, r)
    cgm_glu = has_cgm & (lab == GLU)
    if cgm_glu.any():
        j = np.minimum(mi[cgm_glu] // CGM_EVERY, glucose.true.shape[1] - 1)
        v[cgm_glu] = glucose.true[diab[cgm_glu], j]
    if burdens.any:
        where, sick = member(burdens.cols, r)
        if sick.any():
            w, ms = where[sick], mi[sick]
            lac = at_minutes(burdens.grid(Effect.LACTATE, power=2.0), ms, w)
            wbc = at_minutes(burdens.grid(Effect.WBC), ms, w)
            crp = at_minutes(burdens.grid(Effect.CRP), np.maximum(ms - _CRP_LAG_MIN, 0), w)
            cre = at_minutes(burdens.grid(Effect.CREATININE), ms, w)
            ls = lab[sick]
            vs = v[sick]
            vs = np.where(ls == LACT, vs + lac, vs)
            vs = np.where(ls == WBC, np.maximum(vs + wbc, 0.5), vs)
            vs = np.where(ls == CRP, vs + crp, vs)
            vs = np.where(ls == CREAT, vs * (1 + cre), vs)
            v[sick] = vs
    return v
