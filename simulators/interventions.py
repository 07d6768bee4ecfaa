"""Interventions as data, schedules of them, and the policy protocol.

An ``Intervention`` is a drug given at a time with a dose. Bolus drugs (antibiotic, diuretic,
steroid, insulin, glucose) act for a while after each dose; continuous drugs (oxygen,
vasopressor) set a level that holds until the next intervention of the same drug, and a dose of
0 stops them. What each drug does to the latent disease burden and to the signals is in
``simulators.conditions`` and ``simulators.vitals``; here is only what a drug *is*.

A schedule maps patient ids to interventions fixed in advance (a treatment arm). A ``Policy``
decides while the simulation runs, from an ``Observation``: the records the patient's stream
delivered since its previous decision, exactly what a twin or a clinician would have received
by then. It never sees latent state or ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from simulators.errors import ConfigError
from twin.events import MedicationClass

if TYPE_CHECKING:
    from simulators.records import Record


class Drug(StrEnum):
    ANTIBIOTIC = "antibiotic"
    DIURETIC = "diuretic"
    STEROID = "steroid"
    INSULIN = "insulin"
    GLUCOSE = "glucose"
    VASOPRESSOR = "vasopressor"
    OXYGEN = "oxygen"


@dataclass(frozen=True, slots=True)
class DrugSpec:
    drug: Drug
    continuous: bool  # a level that holds until changed (dose 0 stops it)
    unit: str  # UCUM unit of ``dose``
    standard_dose: float
    atc: str  # WHO ATC code of the representative agent
    display: str
    medication_class: MedicationClass | None  # twin class; oxygen is charted as OxygenTherapy
    action_min: int  # bolus: minutes a dose keeps acting; continuous: 0


DRUGS: dict[Drug, DrugSpec] = {
    d.drug: d
    for d in (
        DrugSpec(
            Drug.ANTIBIOTIC,
            False,
            "g",
            4.5,
            "J01CR05",
            "piperacillin and tazobactam",
            MedicationClass.ANTIBIOTIC,
            12 * 60,
        ),  # q8h plus a 4 h tail
        DrugSpec(
            Drug.DIURETIC,
            False,
            "mg",
            40.0,
            "C03CA01",
            "furosemide",
            MedicationClass.DIURETIC,
            6 * 60,
        ),
        DrugSpec(
            Drug.STEROID,
            False,
            "mg",
            30.0,
            "H02AB06",
            "prednisolone",
            MedicationClass.OTHER,
            24 * 60,
        ),
        DrugSpec(
            Drug.INSULIN,
            False,
            "[iU]",
            4.0,
            "A10AB05",
            "insulin aspart",
            MedicationClass.INSULIN,
            5 * 60,
        ),
        DrugSpec(Drug.GLUCOSE, False, "g", 15.0, "V06DC01", "glucose", MedicationClass.GLUCOSE, 60),
        DrugSpec(
            Drug.VASOPRESSOR,
            True,
            "ug/kg/min",
            0.1,
            "C01CA03",
            "norepinephrine",
            MedicationClass.VASOPRESSOR,
            0,
        ),
        DrugSpec(Drug.OXYGEN, True, "L/min", 2.0, "V03AN01", "oxygen", None, 0),
    )
}
DRUG_ORDER: tuple[Drug, ...] = tuple(DRUGS)
DRUG_CODE: dict[Drug, int] = {d: i for i, d in enumerate(DRUG_ORDER)}

Source = Literal["schedule", "policy", "usual_care"]
SOURCES: tuple[Source, ...] = ("schedule", "policy", "usual_care")


@dataclass(frozen=True, slots=True, order=True)
class Intervention:
    """``name`` given at ``at`` (aware UTC) with ``dose`` in the drug's unit (None: standard)."""

    at: datetime
    name: Drug
    dose: float | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ConfigError(f"intervention time {self.at} has no UTC offset")
        object.__setattr__(self, "name", Drug(self.name))
        if self.dose is not None and not (math.isfinite(self.dose) and self.dose >= 0):
            raise ConfigError(f"dose must be finite and >= 0, got {self.dose}")

    @property
    def amount(self) -> float:
        return DRUGS[self.name].standard_dose if self.dose is None else float(self.dose)


Schedule = Mapping[str, Sequence[Intervention]]  # patient_id -> interventions


@dataclass(frozen=True, slots=True)
class Observation:
    """What a policy may see: records delivered in (previous decision, ``now``]."""

    patient_id: str
    now: datetime
    records: tuple[Record, ...] = field(default_factory=tuple)


@runtime_checkable
class Policy(Protocol):
    """Decides interventions from observations only; called every ``interval`` per patient.

    Returned interventions must not be earlier than ``observation.now``: the past is fixed.
    A policy may also define ``decide_batch(observations) -> list[Iterable[Intervention]]``
    (one entry per observation, same order); the engine then calls it once per decision time
    for a chunk's patients instead of ``decide`` per patient, so work can be batched (a
    forecaster run over many twins at once).
    """

    interval: timedelta

    def decide(self, observation: Observation) -> Iterable[Intervention]: ...


@dataclass(frozen=True, slots=True)
class DoseLog:
    """Doses as columns: patient row, drug (``DRUG_CODE``), minute after start, dose, source.

    The simulator's internal form of a list of interventions, for vector code.
    """

    row: npt.NDArray[np.int64]
    drug: npt.NDArray[np.int64]
    minute: npt.NDArray[np.float64]
    dose: npt.NDArray[np.float64]
    source: npt.NDArray[np.int64]  # index into SOURCES

    @classmethod
    def empty(cls) -> DoseLog:
        i, f = np.zeros(0, np.int64), np.zeros(0)
        return cls(i, i.copy(), f, f.copy(), i.copy())

    @classmethod
    def concat(cls, logs: Sequence[DoseLog]) -> DoseLog:
        """All doses, ordered by patient row, minute, drug and source."""
        if not logs:
            return cls.empty()
        cat = {f.name: np.concatenate([getattr(g, f.name) for g in logs]) for f in fields(cls)}
        out = cls(**cat)
        return out.take(np.lexsort((out.source, out.drug, out.minute, out.row)))

    @property
    def n(self) -> int:
        return int(self.row.shape[0])

    def take(self, rows: npt.ArrayLike) -> Self:
        return type(self)(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})
