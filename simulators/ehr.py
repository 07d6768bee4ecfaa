"""EHR events: when admissions, diagnoses, labs, charted observations and medications happen.

Produces one chunk's EHR as columns (``EhrTable``); ``simulators.fhir`` renders rows as FHIR R4
resources and twin events. Rules (docs/simulator.md, "EHR"):

- Admission (ward: inpatient encounter; home: home-health encounter) and a Patient resource at
  the start; comorbidities as Conditions (ICD-10) at clerking, 30-120 min later; a prescribed
  88-92 % SpO2 target (NEWS2 scale 2) for hypercapnic patients.
- Labs (``simulators.labs``): routine ward bloods, condition and critical panels, with
  turnaround; collection time is ``observed_at``, release ``issued_at``.
- Charted consciousness (ACVPU) with every ward obs round.
- Medications: the first dose of a drug is ordered (MedicationRequest), every bolus dose and
  every continuous-rate change is an administration, stopping a continuous drug ends the order;
  oxygen changes are charted as O2 flow observations.
- Diagnoses of sepsis, COPD exacerbation and decompensated heart failure 30-90 min after
  recognition; discharge (ward) or death closes the encounter; a critical event at home is
  followed by an emergency admission.

Randomness here is keyed by what it belongs to (``keyed_uniform``), because how many labs a
patient gets depends on the trajectory, which interventions change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Self

import numpy as np
import numpy.typing as npt

from simulators.burden import Burdens
from simulators.cohort import COMORBIDITIES, HOME, Cohort
from simulators.conditions import CONDITION_CODE, Condition, Episodes
from simulators.config import SimulationConfig
from simulators.devices import Channel
from simulators.glucose import Glucose
from simulators.interventions import DRUG_ORDER, DRUGS, Drug
from simulators.labs import draw_labs
from simulators.physiology import Latent
from simulators.seeds import Stream, keyed_uniform, to_normal
from twin.events import Comorbidity
from twin.signals import Signal

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Keyed = Callable[..., F64]  # keyed uniforms for this chunk


class EhrKind(IntEnum):
    PATIENT = 0
    ADMIT = 1  # code: 0 ward, 1 home monitoring, 2 emergency admission from home
    DISCHARGE = 2  # code: 0 home, 1 died
    CONDITION = 3  # code: index into DIAGNOSES
    OXYGEN_TARGET = 4
    LAB = 5  # code: index into LABS
    CONSCIOUSNESS = 6  # value: ACVPU level
    OXYGEN_FLOW = 7  # value: L/min (0: stopped)
    MED_ORDER = 8  # code: DRUG_CODE
    MED_GIVEN = 9
    MED_STOP = 10


@dataclass(frozen=True, slots=True)
class Diagnosis:
    icd10: str
    display: str
    comorbidity: Comorbidity


DIAGNOSES: tuple[Diagnosis, ...] = (
    Diagnosis("I50.9", "Heart failure, unspecified", Comorbidity.HEART_FAILURE),
    Diagnosis("J44.9", "Chronic obstructive pulmonary disease, unspecified", Comorbidity.COPD),
    Diagnosis(
        "E10.9", "Type 1 diabetes mellitus without complications", Comorbidity.TYPE1_DIABETES
    ),
    Diagnosis(
        "E11.9", "Type 2 diabetes mellitus without complications", Comorbidity.TYPE2_DIABETES
    ),
    Diagnosis("N18.9", "Chronic kidney disease, unspecified", Comorbidity.CKD),
    Diagnosis("I10", "Essential (primary) hypertension", Comorbidity.HYPERTENSION),
    Diagnosis(
        "J96.12",
        "Chronic respiratory failure with hypercapnia",
        Comorbidity.HYPERCAPNIC_RESPIRATORY_FAILURE,
    ),
    Diagnosis("A41.9", "Sepsis, unspecified organism", Comorbidity.SEPSIS),
    Diagnosis(
        "J44.1", "Chronic obstructive pulmonary disease with (acute) exacerbation", Comorbidity.COPD
    ),
    Diagnosis(
        "I50.23", "Acute on chronic systolic (congestive) heart failure", Comorbidity.HEART_FAILURE
    ),
)
_HYPERCAPNIC_DX = 6
ACUTE_DX = {
    CONDITION_CODE[Condition.SEPSIS]: 7,
    CONDITION_CODE[Condition.COPD_EXACERBATION]: 8,
    CONDITION_CODE[Condition.HF_DECOMPENSATION]: 9,
}


@dataclass(frozen=True, slots=True)
class EhrTable:
    """A chunk's EHR events as columns, ordered by patient row and time."""

    row: I64
    kind: I64
    code: I64
    minute: F64  # event time (labs: specimen collection)
    issued_min: F64  # labs: result release; NaN otherwise
    received_ms: I64  # delivery, ms after the start
    value: F64

    @property
    def n(self) -> int:
        return int(self.row.shape[0])

    def take(self, rows: npt.ArrayLike) -> Self:
        return type(self)(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


class _Builder:
    def __init__(self, seed: int, index: I64) -> None:
        self.cols: dict[str, list[F64 | I64]] = {f.name: [] for f in fields(EhrTable)}
        self._seed = seed
        self._index = index

    def add(
        self,
        row: npt.ArrayLike,
        kind: EhrKind,
        code: npt.ArrayLike,
        minute: npt.ArrayLike,
        value: npt.ArrayLike = 0.0,
        issued: npt.ArrayLike = np.nan,
        received_ms: npt.ArrayLike | None = None,
    ) -> None:
        r = np.atleast_1d(np.asarray(row, np.int64))
        m = np.broadcast_to(np.asarray(minute, np.float64), r.shape)
        iss = np.broadcast_to(np.asarray(issued, np.float64), r.shape)
        if received_ms is None:
            # Interface-engine latency, 1-60 s: never zero, so nothing a decision at t causes
            # is delivered at t itself.
            base = np.where(np.isnan(iss), m, iss)
            u = keyed_uniform(
                self._seed,
                Stream.EHR,
                99,
                self._index[r],
                int(kind),
                np.asarray(code),
                np.floor(m * 60).astype(np.int64),
            )
            received_ms = np.round(base * 60_000 + 1000 + 59_000 * u).astype(np.int64)
        self.cols["row"].append(r)
        self.cols["kind"].append(np.full(r.shape, int(kind), np.int64))
        self.cols["code"].append(np.broadcast_to(np.asarray(code, np.int64), r.shape))
        self.cols["minute"].append(m)
        self.cols["issued_min"].append(iss)
        self.cols["received_ms"].append(np.broadcast_to(np.asarray(received_ms, np.int64), r.shape))
        self.cols["value"].append(np.broadcast_to(np.asarray(value, np.float64), r.shape))

    def build(self) -> EhrTable:
        cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.cols.items()}
        table = EhrTable(
            row=cat["row"].astype(np.int64),
            kind=cat["kind"].astype(np.int64),
            code=cat["code"].astype(np.int64),
            minute=cat["minute"].astype(np.float64),
            issued_min=cat["issued_min"].astype(np.float64),
            received_ms=cat["received_ms"].astype(np.int64),
            value=cat["value"].astype(np.float64),
        )
        order = np.lexsort((table.code, table.kind, table.minute, table.row))
        return table.take(order)


def build_ehr(
    config: SimulationConfig,
    cohort: Cohort,
    episodes: Episodes,
    latent: Latent,
    burdens: Burdens,
    glucose: Glucose,
    channels: dict[Signal, Channel],
) -> EhrTable:
    horizon = config.minutes
    seed = config.seed
    end = latent.end_min(horizon)
    rows = np.arange(cohort.n)
    idx = cohort.index
    out = _Builder(seed, idx)

    def u(*keys: npt.ArrayLike) -> F64:
        return keyed_uniform(seed, Stream.EHR, *keys)

    def delay_ms(median_s: float, *keys: npt.ArrayLike) -> I64:
        z = to_normal(u(*keys))
        cap = config.devices.ehr_max_delay_s
        return np.round(np.minimum(median_s * np.exp(z), cap) * 1000).astype(np.int64)

    home = cohort.setting == HOME
    out.add(rows, EhrKind.PATIENT, 0, 0.0, received_ms=delay_ms(5, idx, 0))
    out.add(rows, EhrKind.ADMIT, home.astype(np.int64), 0.0, received_ms=delay_ms(5, idx, 1))
    clerk = 30 + 90 * u(idx, 2)
    for k, name in enumerate(COMORBIDITIES):
        has = np.asarray(getattr(cohort, name))
        r = rows[has]
        at = clerk[has] + k
        out.add(
            r,
            EhrKind.CONDITION,
            k,
            at,
            received_ms=np.round(at * 60_000).astype(np.int64) + delay_ms(20, idx[has], 3, k),
        )
    hyp = rows[cohort.hypercapnic]
    at = clerk[cohort.hypercapnic] + 10
    ms = np.round(at * 60_000).astype(np.int64)
    out.add(hyp, EhrKind.CONDITION, _HYPERCAPNIC_DX, at, received_ms=ms + delay_ms(20, idx[hyp], 4))
    out.add(
        hyp, EhrKind.OXYGEN_TARGET, 0, at + 1, received_ms=ms + 60_000 + delay_ms(20, idx[hyp], 5)
    )

    # Discharges, deaths and emergency admissions from home.
    dead = np.isfinite(latent.death_min)
    left = np.isfinite(latent.discharge_min) & ~dead
    for mask, code, mins in ((left, 0, latent.discharge_min), (dead, 1, latent.death_min)):
        r = rows[mask]
        out.add(
            r,
            EhrKind.DISCHARGE,
            code,
            mins[mask],
            received_ms=np.round(mins[mask] * 60_000).astype(np.int64) + delay_ms(30, idx[mask], 6),
        )
    started = np.nonzero(latent.started)[0]
    crit = started[np.isfinite(latent.critical_min[started])]
    ep_rows = episodes.row[crit]
    crit_min = latent.critical_min[crit]
    at_home = home[ep_rows]
    admit_at = crit_min + 60 + 60 * u(idx[ep_rows], 7, crit)
    ok = at_home & (admit_at < end[ep_rows])
    out.add(ep_rows[ok], EhrKind.ADMIT, 2, admit_at[ok])

    # Acute diagnoses after recognition.
    rec = started[np.isfinite(latent.recognized_min[started])]
    for e in rec:
        dx = ACUTE_DX.get(int(episodes.condition[e]))
        r = int(episodes.row[e])
        at = latent.recognized_min[e] + 30 + 60 * float(u(idx[r], 8, e))
        if dx is not None and at < end[r]:
            out.add(r, EhrKind.CONDITION, dx, at)

    labs = draw_labs(config, cohort, episodes, latent, burdens, glucose, end)
    out.add(
        labs.row,
        EhrKind.LAB,
        labs.lab,
        labs.minute,
        value=labs.value,
        issued=labs.issued_min,
        received_ms=labs.received_ms,
    )
    _charted(out, cohort, burdens, channels, end)
    _medications(out, latent, end, u, idx)
    return out.build()


def _charted(
    out: _Builder, cohort: Cohort, burdens: Burdens, channels: dict[Signal, Channel], end: F64
) -> None:
    """ACVPU charted with every ward obs round (the cuff reading's time and charting delay)."""
    cuff = channels[Signal.SYSTOLIC_BP]
    row, slot = np.nonzero(cuff.minute >= 0)
    minute = cuff.minute[row, slot].astype(np.int64)
    keep = (cohort.setting[row] != HOME) & (minute < end[row])
    row, slot, minute = row[keep], slot[keep], minute[keep]
    level = burdens.confusion(minute, row) if burdens.any else np.zeros(minute.shape, np.int8)
    received = minute * 60_000 + cuff.delay_ms[row, slot].astype(np.int64)
    out.add(
        row,
        EhrKind.CONSCIOUSNESS,
        0,
        minute.astype(np.float64),
        value=level.astype(np.float64),
        received_ms=received,
    )


def _medications(out: _Builder, latent: Latent, end: F64, u: Keyed, idx: I64) -> None:
    doses = latent.doses
    if doses.n == 0:
        return
    keep = doses.minute < end[doses.row]
    ordered: set[tuple[int, int]] = set()
    for i in np.nonzero(keep)[0]:
        r, d, at, dose = (
            int(doses.row[i]),
            int(doses.drug[i]),
            float(doses.minute[i]),
            float(doses.dose[i]),
        )
        drug = DRUG_ORDER[d]
        key = (r, d)
        chart = 60 + 840 * float(u(idx[r], 30, d, int(at)))  # charted 1-15 min after
        if key not in ordered and dose > 0:
            # Ordered at the first dose ("stat"): an order placed ahead of a dose that a later
            # decision might cancel would rewrite what a policy has already received.
            ordered.add(key)
            out.add(r, EhrKind.MED_ORDER, d, at, value=dose)
        if drug is Drug.OXYGEN:
            out.add(
                r,
                EhrKind.OXYGEN_FLOW,
                d,
                at,
                value=dose,
                received_ms=round(at * 60_000 + chart * 1000),
            )
            if dose == 0:
                out.add(r, EhrKind.MED_STOP, d, at, value=0.0)
                ordered.discard(key)
            continue
        if DRUGS[drug].continuous and dose == 0:
            out.add(r, EhrKind.MED_STOP, d, at, value=0.0)
            ordered.discard(key)
            continue
        out.add(
            r, EhrKind.MED_GIVEN, d, at, value=dose, received_ms=round(at * 60_000 + chart * 1000)
        )
