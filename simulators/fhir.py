"""FHIR R4 resources and their twin-event equivalents for EHR rows.

Resources are plain JSON-ready dicts (R4 4.0.1 element names; they also validate with
``fhir.resources.R4B``). Codes: LOINC for observations (with UCUM units), ICD-10-CM for
conditions, WHO ATC for medications, HL7 v3 ActCode for encounter classes. Every resource
refers to its patient as ``Patient/<patient_id>``. Each row also has the slim twin event the
FHIR edge would produce, so in-process consumers need not parse FHIR.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from simulators.ehr import DIAGNOSES, EhrKind
from simulators.interventions import DRUG_ORDER, DRUGS
from simulators.labs import LABS
from twin.events import (
    ConsciousnessAssessment,
    Demographics,
    Diagnosis,
    Encounter,
    EncounterAction,
    Event,
    LabResult,
    MedicationAction,
    MedicationClass,
    MedicationEvent,
    OxygenTarget,
    OxygenTherapy,
    Sex,
)
from twin.signals import ACVPU_LETTERS, Acvpu

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
ATC = "http://www.whocc.no/atc"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SOURCE = "sim-ehr"
ACVPU_LOINC = "67775-7"
_ACVPU_WORDS = {
    Acvpu.ALERT: "Alert",
    Acvpu.CONFUSION: "New confusion",
    Acvpu.VOICE: "Voice",
    Acvpu.PAIN: "Pain",
    Acvpu.UNRESPONSIVE: "Unresponsive",
}
O2_FLOW_LOINC = "3151-8"
SPO2_LOINC = "59408-5"
_ENCOUNTER_CLASS = {
    0: ("IMP", "inpatient encounter", "ward"),
    1: ("HH", "home health", "home"),
    2: ("EMER", "emergency", "emergency"),
}
_RESOURCE_SLUG = {
    EhrKind.PATIENT: "pt",
    EhrKind.ADMIT: "enc",
    EhrKind.DISCHARGE: "enc",
    EhrKind.CONDITION: "cond",
    EhrKind.OXYGEN_TARGET: "goal",
    EhrKind.LAB: "lab",
    EhrKind.CONSCIOUSNESS: "obs",
    EhrKind.OXYGEN_FLOW: "obs",
    EhrKind.MED_ORDER: "mreq",
    EhrKind.MED_GIVEN: "madm",
    EhrKind.MED_STOP: "mreq",
}


def iso(t: datetime) -> str:
    """FHIR instant: UTC with a Z, seconds precision."""
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ref(patient_id: str) -> dict[str, str]:
    return {"reference": f"Patient/{patient_id}"}


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


class Row:
    """One EHR row with what rendering needs (kept small: built per delivered record)."""

    __slots__ = (
        "birth_date",
        "code",
        "encounter",
        "female",
        "issued",
        "kind",
        "observed",
        "patient_id",
        "resource_id",
        "value",
    )

    def __init__(
        self,
        *,
        patient_id: str,
        kind: EhrKind,
        code: int,
        observed: datetime,
        issued: datetime | None,
        value: float,
        resource_id: str,
        encounter: str,
        birth_date: date,
        female: bool,
    ) -> None:
        self.patient_id, self.kind, self.code = patient_id, kind, code
        self.observed, self.issued, self.value = observed, issued, value
        self.resource_id, self.encounter = resource_id, encounter
        self.birth_date, self.female = birth_date, female


def resource_id(patient_id: str, kind: EhrKind, seq: int) -> str:
    if kind in (EhrKind.ADMIT, EhrKind.DISCHARGE):
        return f"{patient_id}-enc-{seq}"
    if kind is EhrKind.PATIENT:
        return patient_id
    return f"{patient_id}-{_RESOURCE_SLUG[kind]}-{seq:05d}"


def render(row: Row) -> tuple[dict[str, Any], Event | None]:
    """The FHIR resource for ``row`` and the twin event it stands for."""
    kind = row.kind
    pid = row.patient_id
    when = iso(row.observed)
    # The wire carries whole seconds; the in-process event must say exactly what the wire says.
    common = {
        "patient_id": pid,
        "observed_at": row.observed.replace(microsecond=0),
        "source": SOURCE,
    }
    if kind is EhrKind.PATIENT:
        sex = Sex.FEMALE if row.female else Sex.MALE
        res = {
            "resourceType": "Patient",
            "id": pid,
            "active": True,
            "gender": sex.value,
            "birthDate": row.birth_date.isoformat(),
        }
        return res, Demographics(**common, birth_date=row.birth_date, sex=sex)
    if kind in (EhrKind.ADMIT, EhrKind.DISCHARGE):
        admit = kind is EhrKind.ADMIT
        cls, display, ward = _ENCOUNTER_CLASS[row.code if admit else 0]
        res = {
            "resourceType": "Encounter",
            "id": row.resource_id,
            "status": "in-progress" if admit else "finished",
            "class": {"system": ACT_CODE, "code": cls, "display": display},
            "subject": _ref(pid),
            "period": {"start" if admit else "end": when},
        }
        if admit and ward:
            res["location"] = [{"location": {"display": ward}, "status": "active"}]
        if not admit:
            disposition = ("exp", "Expired") if row.code == 1 else ("home", "Home")
            res["hospitalization"] = {
                "dischargeDisposition": _cc(
                    "http://terminology.hl7.org/CodeSystem/discharge-disposition", *disposition
                )
            }
        action = EncounterAction.ADMIT if admit else EncounterAction.DISCHARGE
        return res, Encounter(**common, action=action, ward=ward if admit else None)
    if kind is EhrKind.CONDITION:
        dx = DIAGNOSES[row.code]
        res = {
            "resourceType": "Condition",
            "id": row.resource_id,
            "clinicalStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"
            ),
            "verificationStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "confirmed",
                "Confirmed",
            ),
            "code": _cc(ICD10, dx.icd10, dx.display),
            "subject": _ref(pid),
            "encounter": {"reference": f"Encounter/{row.encounter}"},
            "recordedDate": when,
        }
        return res, Diagnosis(**common, condition=dx.comorbidity, code=dx.icd10)
    if kind is EhrKind.OXYGEN_TARGET:
        res = {
            "resourceType": "Goal",
            "id": row.resource_id,
            "lifecycleStatus": "active",
            "description": {"text": "Target oxygen saturation 88-92 % (hypercapnic)"},
            "subject": _ref(pid),
            "startDate": row.observed.date().isoformat(),
            "target": [
                {
                    "measure": _cc(LOINC, SPO2_LOINC, "Oxygen saturation by pulse oximetry"),
                    "detailRange": {"low": _quantity(88, "%"), "high": _quantity(92, "%")},
                }
            ],
        }
        return res, OxygenTarget(**common, spo2_scale=2)
    if kind is EhrKind.LAB:
        lab = LABS[row.code]
        assert row.issued is not None
        res = _observation(
            row, "laboratory", lab.loinc, lab.display, _quantity(row.value, lab.unit)
        )
        res["issued"] = iso(row.issued)
        return res, LabResult(
            **common,
            code=lab.loinc,
            value=row.value,
            unit=lab.unit,
            issued_at=row.issued.replace(microsecond=0),
        )
    if kind is EhrKind.CONSCIOUSNESS:
        level = Acvpu(int(row.value))
        res = _observation(
            row,
            "vital-signs",
            ACVPU_LOINC,
            "Level of responsiveness (ACVPU)",
            _quantity(int(level), "{ACVPU}"),
        )
        # Charted as a coded answer (the ACVPU letter), as EHRs send it, not as a number.
        del res["valueQuantity"]
        word = _ACVPU_WORDS[level]
        res["valueCodeableConcept"] = {
            "coding": [{"code": ACVPU_LETTERS[level], "display": word}],
            "text": word,
        }
        return res, ConsciousnessAssessment(**common, level=level)
    if kind is EhrKind.OXYGEN_FLOW:
        res = _observation(
            row,
            "vital-signs",
            O2_FLOW_LOINC,
            "Inhaled oxygen flow rate",
            _quantity(row.value, "L/min"),
        )
        return res, OxygenTherapy(**common, on=row.value > 0, flow_l_min=row.value)
    return _medication(row, common)


def _observation(
    row: Row, category: str, code: str, display: str, quantity: dict[str, Any]
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": row.resource_id,
        "status": "final",
        "category": [_cc(OBS_CATEGORY, category, category.replace("-", " ").title())],
        "code": _cc(LOINC, code, display),
        "subject": _ref(row.patient_id),
        "encounter": {"reference": f"Encounter/{row.encounter}"},
        "effectiveDateTime": iso(row.observed),
        "valueQuantity": quantity,
    }


def _medication(row: Row, common: dict[str, Any]) -> tuple[dict[str, Any], Event | None]:
    spec = DRUGS[DRUG_ORDER[row.code]]
    med = _cc(ATC, spec.atc, spec.display)
    when = iso(row.observed)
    mclass = spec.medication_class or MedicationClass.OTHER
    dose = _quantity(row.value, spec.unit)
    res: dict[str, Any]
    if row.kind is EhrKind.MED_GIVEN:
        res = {
            "resourceType": "MedicationAdministration",
            "id": row.resource_id,
            "status": "completed",
            "medicationCodeableConcept": med,
            "subject": _ref(row.patient_id),
            "context": {"reference": f"Encounter/{row.encounter}"},
            "effectiveDateTime": when,
        }
        res["dosage"] = {"rateQuantity": dose} if spec.continuous else {"dose": dose}
        action = MedicationAction.ADMINISTERED
    else:
        ordered = row.kind is EhrKind.MED_ORDER
        res = {
            "resourceType": "MedicationRequest",
            "id": row.resource_id,
            "status": "active" if ordered else "stopped",
            "intent": "order",
            "medicationCodeableConcept": med,
            "subject": _ref(row.patient_id),
            "encounter": {"reference": f"Encounter/{row.encounter}"},
            "authoredOn": when,
        }
        if ordered:
            key = "rateQuantity" if spec.continuous else "doseQuantity"
            res["dosageInstruction"] = [
                {"text": f"{row.value:g} {spec.unit} {spec.display}", "doseAndRate": [{key: dose}]}
            ]
        action = MedicationAction.ORDERED if ordered else MedicationAction.STOPPED
    event = MedicationEvent(
        **common,
        medication=mclass,
        action=action,
        code=spec.atc,
        dose=row.value if row.kind is not EhrKind.MED_STOP else None,
        dose_unit=spec.unit if row.kind is not EhrKind.MED_STOP else None,
    )
    return res, event


def birth_date(start: datetime, days_before: int) -> date:
    return (start - timedelta(days=int(days_before))).date()
