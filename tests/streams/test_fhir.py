"""The FHIR R4 edge against hand-written R4 resources (shaped like the HL7 vital-signs examples).

Expected values are worked out by hand from shared/reference/clinical.md and the R4 value sets,
never computed with the code under test.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streams.fhir as fhir
from streams.fhir import MAX_PAYLOAD_BYTES, events_from_fhir, iter_fhir_results
from twin.errors import InvalidEvent, Reason
from twin.events import (
    Comorbidity,
    ConsciousnessAssessment,
    Demographics,
    Diagnosis,
    Encounter,
    EncounterAction,
    LabResult,
    MedicationAction,
    MedicationClass,
    MedicationEvent,
    OxygenTarget,
    OxygenTherapy,
    Sex,
    VitalSample,
    derive_event_id,
)
from twin.signals import Acvpu, Signal

RECEIVED = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
T10 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
VITAL = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
            }
        ]
    }
]
LAB = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory",
            }
        ]
    }
]


def loinc(code: str, display: str | None = None) -> dict[str, Any]:
    if display is None:
        return {"coding": [{"system": LOINC, "code": code}]}
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}


def qty(value: Any, code: str, unit: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit or code, "system": UCUM, "code": code}


def heart_rate(**changes: Any) -> dict[str, Any]:
    res = {
        "resourceType": "Observation",
        "id": "heart-rate",
        "meta": {
            "versionId": "1",
            "profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"],
        },
        "status": "final",
        "category": VITAL,
        "code": loinc("8867-4", "Heart rate"),
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2026-01-05T11:00:00+01:00",
        "device": {"reference": "Device/watch-7"},
        "valueQuantity": qty(44, "/min", "beats/minute"),
    }
    res.update(changes)
    return res


def bp_panel(*components: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "blood-pressure",
        "meta": {"versionId": "3"},
        "status": "final",
        "category": VITAL,
        "code": loinc("85354-9", "Blood pressure panel with all children optional"),
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2026-01-05T10:00:00Z",
        "component": list(components)
        or [
            {"code": loinc("8480-6", "Systolic"), "valueQuantity": qty(107, "mm[Hg]", "mmHg")},
            {"code": loinc("8462-4", "Diastolic"), "valueQuantity": qty(60, "mm[Hg]", "mmHg")},
        ],
    }


def lab(code: str, value: Any, unit: str, **changes: Any) -> dict[str, Any]:
    res = {
        "resourceType": "Observation",
        "id": f"lab-{code}",
        "status": "final",
        "category": LAB,
        "code": loinc(code),
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2026-01-05T10:00:00Z",
        "issued": "2026-01-05T10:42:00Z",
        "valueQuantity": qty(value, unit),
    }
    res.update(changes)
    return res


def med_admin(atc: str = "C01CA03", **changes: Any) -> dict[str, Any]:
    res = {
        "resourceType": "MedicationAdministration",
        "id": "noradrenaline-1",
        "meta": {"versionId": "1"},
        "status": "in-progress",
        "medicationCodeableConcept": {
            "coding": [{"system": ATC, "code": atc, "display": "norepinephrine"}]
        },
        "subject": {"reference": "Patient/example"},
        "effectivePeriod": {"start": "2026-01-05T10:00:00Z"},
        "dosage": {"dose": {"value": 4, "unit": "mg", "system": UCUM, "code": "mg"}},
    }
    res.update(changes)
    return res


def med_request(atc: str = "J01CR05", **changes: Any) -> dict[str, Any]:
    res = {
        "resourceType": "MedicationRequest",
        "id": "piptaz-1",
        "meta": {"versionId": "1", "lastUpdated": "2026-01-05T11:30:00Z"},
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": ATC, "code": atc}]},
        "subject": {"reference": "Patient/example"},
        "authoredOn": "2026-01-05T10:00:00Z",
        "dosageInstruction": [
            {
                "text": "4.5 g every 8 hours",
                "doseAndRate": [
                    {"doseQuantity": {"value": 4.5, "unit": "g", "system": UCUM, "code": "g"}}
                ],
            }
        ],
    }
    res.update(changes)
    return res


def condition(code: str, status: str = "active", **changes: Any) -> dict[str, Any]:
    res = {
        "resourceType": "Condition",
        "id": "cond-1",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": status,
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "code": {"coding": [{"system": ICD10, "code": code}]},
        "subject": {"reference": "Patient/example"},
        "onsetDateTime": "2026-01-05T10:00:00Z",
        "recordedDate": "2026-01-05T10:30:00Z",
    }
    res.update(changes)
    return res


def encounter(status: str = "in-progress", **changes: Any) -> dict[str, Any]:
    res = {
        "resourceType": "Encounter",
        "id": "enc-1",
        "meta": {"versionId": "1"},
        "status": status,
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        },
        "subject": {"reference": "Patient/example"},
        "period": {"start": "2026-01-03T08:15:00Z"},
        "location": [{"location": {"reference": "Location/w7b", "display": "Ward 7B"}}],
    }
    res.update(changes)
    return res


def patient(**changes: Any) -> dict[str, Any]:
    res = {
        "resourceType": "Patient",
        "id": "example",
        "meta": {"versionId": "4", "lastUpdated": "2026-01-02T09:00:00Z"},
        "name": [{"family": "Chalmers", "given": ["Peter"]}],
        "gender": "male",
        "birthDate": "1974-12-25",
    }
    res.update(changes)
    return res


def only(resource: Any, **kwargs: Any) -> Any:
    events = events_from_fhir(resource, received_at=RECEIVED, **kwargs)
    assert len(events) == 1, events
    return events[0]


def reject(resource: Any, **kwargs: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        events_from_fhir(resource, received_at=RECEIVED, **kwargs)
    return info.value


# --- Observation: vitals ------------------------------------------------------------------------


def test_heart_rate_observation() -> None:
    ev = only(heart_rate())
    assert isinstance(ev, VitalSample)
    assert ev.patient_id == "example"
    assert ev.code == "8867-4"
    assert ev.signal is Signal.HEART_RATE
    assert ev.value == 44.0
    assert ev.unit == "/min"
    assert ev.observed_at == T10  # 11:00+01:00
    assert ev.received_at == RECEIVED
    assert ev.source == "ehr"
    assert ev.device_id == "watch-7"
    assert ev.event_id == derive_event_id("fhir", "Observation", "heart-rate", "1", "8867-4")


def test_source_is_passed_through() -> None:
    assert only(heart_rate(), source="epic-prod").source == "epic-prod"


def test_blood_pressure_panel_gives_one_event_per_component() -> None:
    sys_bp, dia_bp = events_from_fhir(bp_panel(), received_at=RECEIVED)
    assert isinstance(sys_bp, VitalSample)
    assert isinstance(dia_bp, VitalSample)
    assert (sys_bp.signal, sys_bp.value, sys_bp.unit) == (Signal.SYSTOLIC_BP, 107.0, "mm[Hg]")
    assert (dia_bp.signal, dia_bp.value) == (Signal.DIASTOLIC_BP, 60.0)
    assert sys_bp.observed_at == dia_bp.observed_at == T10
    assert sys_bp.event_id == derive_event_id(
        "fhir", "Observation", "blood-pressure", "3", "8480-6"
    )
    assert dia_bp.event_id == derive_event_id(
        "fhir", "Observation", "blood-pressure", "3", "8462-4"
    )


def test_panel_skips_uncarried_components_and_absent_values() -> None:
    # Palpated systolic in shock: no diastolic, a mean arterial pressure the twin does not carry.
    events = events_from_fhir(
        bp_panel(
            {"code": loinc("8480-6"), "valueQuantity": qty(78, "mm[Hg]")},
            {
                "code": loinc("8462-4"),
                "dataAbsentReason": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                            "code": "not-performed",
                        }
                    ]
                },
            },
            {"code": loinc("8478-0", "Mean blood pressure"), "valueQuantity": qty(60, "mm[Hg]")},
        ),
        received_at=RECEIVED,
    )
    assert [(e.code, e.value) for e in events] == [("8480-6", 78.0)]


def test_panel_with_no_carried_value_is_rejected() -> None:
    absent = {"code": loinc("8480-6"), "dataAbsentReason": {"text": "patient refused"}}
    assert reject(bp_panel(absent)).reason is Reason.MISSING_ELEMENT
    mean_only = {"code": loinc("8478-0"), "valueQuantity": qty(60, "mm[Hg]")}
    assert reject(bp_panel(mean_only)).reason is Reason.UNKNOWN_CODE
    snomed = {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006"}]}}
    assert reject(bp_panel({**snomed, "valueQuantity": qty(1, "mm[Hg]")})).reason is (
        Reason.UNSUPPORTED_CODE_SYSTEM
    )


def test_panel_with_only_members_yields_nothing() -> None:
    panel = bp_panel()
    del panel["component"]
    panel["hasMember"] = [{"reference": "Observation/heart-rate"}]
    assert events_from_fhir(panel, received_at=RECEIVED) == []
    del panel["hasMember"]
    assert reject(panel).reason is Reason.MISSING_ELEMENT


def test_temperature_in_fahrenheit_is_normalised_to_celsius() -> None:
    ev = only(
        heart_rate(
            id="temp",
            code=loinc("8310-5", "Body temperature"),
            valueQuantity=qty(100.4, "[degF]", "degF"),
        )
    )
    assert ev.signal is Signal.TEMPERATURE
    assert ev.unit == "Cel"
    assert ev.value == pytest.approx(38.0)


def test_unit_text_is_used_when_there_is_no_ucum_code() -> None:
    ev = only(heart_rate(valueQuantity={"value": 91, "unit": "bpm"}))
    assert (ev.value, ev.unit) == (91.0, "/min")


def test_spo2_with_two_loinc_codings_is_one_event() -> None:
    code = {
        "coding": [
            {"system": LOINC, "code": "2708-6", "display": "Oxygen saturation in Arterial blood"},
            {"system": LOINC, "code": "59408-5", "display": "Oxygen saturation by Pulse oximetry"},
        ]
    }
    ev = only(heart_rate(id="spo2", code=code, valueQuantity=qty(95, "%")))
    assert (ev.signal, ev.code, ev.value) == (Signal.SPO2, "2708-6", 95.0)


def test_effective_period_start_is_the_event_time() -> None:
    res = heart_rate(effectivePeriod={"start": "2026-01-05T10:00:00Z"})
    del res["effectiveDateTime"]
    assert only(res).observed_at == T10


def test_cgm_glucose_in_mmol_is_a_vital_in_mg_dl() -> None:
    ev = only(heart_rate(id="cgm", code=loinc("105272-9"), valueQuantity=qty(5.5, "mmol/L")))
    assert isinstance(ev, VitalSample)
    assert ev.signal is Signal.GLUCOSE
    assert ev.value == pytest.approx(99.088)  # 5.5 * 18.016


def test_consciousness_coded_and_as_text() -> None:
    coded = heart_rate(
        id="acvpu",
        code=loinc("67775-7", "Level of responsiveness"),
        valueCodeableConcept={"coding": [{"code": "V", "display": "Voice"}]},
    )
    del coded["valueQuantity"]
    ev = only(coded)
    assert isinstance(ev, ConsciousnessAssessment)
    assert ev.level is Acvpu.VOICE
    text = {k: v for k, v in coded.items() if k != "valueCodeableConcept"}
    assert only({**text, "valueString": "New confusion"}).level is Acvpu.CONFUSION
    assert only({**text, "valueString": "a"}).level is Acvpu.ALERT
    bad = reject({**text, "valueString": "drowsy"})
    assert bad.reason is Reason.UNKNOWN_CODE


def test_oxygen_flow_observation_is_oxygen_therapy() -> None:
    on = only(heart_rate(id="o2", code=loinc("3151-8"), valueQuantity=qty(2, "L/min")))
    assert isinstance(on, OxygenTherapy)
    assert (on.on, on.flow_l_min) == (True, 2.0)
    off = only(heart_rate(id="o2", code=loinc("3151-8"), valueQuantity=qty(0, "L/min")))
    assert (off.on, off.flow_l_min) == (False, 0.0)
    assert (
        reject(heart_rate(code=loinc("3151-8"), valueQuantity=qty(2, "%"))).reason
        is Reason.UNKNOWN_UNIT
    )


# --- Observation: labs --------------------------------------------------------------------------


def test_lactate_lab_with_issued() -> None:
    ev = only(lab("2524-7", 4.2, "mmol/L"))
    assert isinstance(ev, LabResult)
    assert (ev.signal, ev.value, ev.unit) == (Signal.LACTATE, 4.2, "mmol/L")
    assert ev.observed_at == T10
    assert ev.issued_at == datetime(2026, 1, 5, 10, 42, tzinfo=UTC)


def test_lab_glucose_in_mmol_is_converted_to_mg_dl() -> None:
    ev = only(lab("14749-6", 5.5, "mmol/L"))
    assert isinstance(ev, LabResult)
    assert ev.signal is Signal.GLUCOSE_LAB
    assert ev.unit == "mg/dL"
    assert ev.value == pytest.approx(99.088)


def test_lab_issued_before_collection_is_impossible() -> None:
    err = reject(lab("2524-7", 4.2, "mmol/L", issued="2026-01-05T09:00:00Z"))
    assert err.reason is Reason.IMPOSSIBLE_TIMESTAMP


def test_censored_lab_value_is_rejected() -> None:
    res = lab("2524-7", 0.5, "mmol/L")
    res["valueQuantity"]["comparator"] = "<"
    err = reject(res)
    assert err.reason is Reason.SCHEMA_VIOLATION
    assert "censored" in err.detail


# --- Observation rejections ---------------------------------------------------------------------


def _without(res: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in res.items() if k not in keys}


@pytest.mark.parametrize(
    ("resource", "reason", "detail"),
    [
        (heart_rate(code=loinc("8302-2", "Body height")), Reason.UNKNOWN_CODE, "8302-2"),
        (
            heart_rate(
                code={"coding": [{"system": "http://snomed.info/sct", "code": "364075005"}]}
            ),
            Reason.UNSUPPORTED_CODE_SYSTEM,
            "http://snomed.info/sct",
        ),
        (heart_rate(code={"text": "pulse"}), Reason.MISSING_ELEMENT, "Observation.code"),
        (
            heart_rate(id="t", code=loinc("8310-5"), valueQuantity={"value": 101, "unit": "F"}),
            Reason.UNKNOWN_UNIT,
            "'F'",
        ),
        (
            heart_rate(valueQuantity={"value": 72, "system": "urn:x", "code": "b"}),
            Reason.UNKNOWN_UNIT,
            "not UCUM",
        ),
        (heart_rate(valueQuantity={"value": 72}), Reason.MISSING_ELEMENT, "unit"),
        (
            heart_rate(valueQuantity=qty(float("nan"), "/min")),
            Reason.NON_FINITE_VALUE,
            "Observation.valueQuantity.value",
        ),
        (heart_rate(valueQuantity=qty(float("inf"), "/min")), Reason.NON_FINITE_VALUE, "inf"),
        (
            heart_rate(effectiveDateTime="2026-01-05T10:00:00"),
            Reason.NAIVE_TIMESTAMP,
            "Observation.effectiveDateTime",
        ),
        # Date-only has no time of day and no UTC offset: it cannot be placed on the timeline.
        (heart_rate(effectiveDateTime="2026-01-05"), Reason.NAIVE_TIMESTAMP, "2026-01-05"),
        (heart_rate(effectiveDateTime="2026-01"), Reason.NAIVE_TIMESTAMP, "2026-01"),
        (
            lab("2524-7", 1, "mmol/L", issued="2026-01-05T10:42:00"),
            Reason.NAIVE_TIMESTAMP,
            "issued",
        ),
        (
            heart_rate(effectiveDateTime="2026-13-05T10:00:00Z"),
            Reason.SCHEMA_VIOLATION,
            "Observation.effectiveDateTime",
        ),
        (heart_rate(effectiveDateTime=1767607200), Reason.SCHEMA_VIOLATION, "dateTime string"),
        (_without(heart_rate(), "effectiveDateTime"), Reason.MISSING_ELEMENT, "effective"),
        (
            heart_rate(effectiveDateTime="1989-12-31T23:00:00Z"),
            Reason.IMPOSSIBLE_TIMESTAMP,
            "1990",
        ),
        (heart_rate(status="bogus"), Reason.INVALID_STATUS, "R4 value set"),
        (heart_rate(status="registered"), Reason.INVALID_STATUS, "not carried"),
        (heart_rate(status="cancelled"), Reason.INVALID_STATUS, "not carried"),
        (heart_rate(status="entered-in-error"), Reason.INVALID_STATUS, "not carried"),
        (_without(heart_rate(), "status"), Reason.MISSING_ELEMENT, "Observation.status"),
        (_without(heart_rate(), "subject"), Reason.MISSING_ELEMENT, "Observation.subject"),
        (heart_rate(subject={"display": "Peter"}), Reason.MISSING_ELEMENT, "reference"),
        (heart_rate(subject={"reference": "Group/ward-7"}), Reason.SCHEMA_VIOLATION, "Group/"),
        (
            heart_rate(dataAbsentReason={"text": "asked but declined"}, valueQuantity=None),
            Reason.MISSING_ELEMENT,
            "dataAbsentReason",
        ),
        (_without(heart_rate(), "valueQuantity"), Reason.MISSING_ELEMENT, "valueQuantity"),
        (heart_rate(valueString="72"), Reason.SCHEMA_VIOLATION, "got multiple"),
        (heart_rate(bogusElement=1), Reason.SCHEMA_VIOLATION, "Observation.bogusElement"),
        (
            lab("2524-7", 4.2, "mmol/L", contained=[{"resourceType": "NoSuchThing"}]),
            Reason.SCHEMA_VIOLATION,
            "NoSuchThing",
        ),
    ],
)
def test_observation_rejections(resource: dict[str, Any], reason: Reason, detail: str) -> None:
    resource = {k: v for k, v in resource.items() if v is not None}
    err = reject(resource)
    assert err.reason is reason, err
    assert detail in err.detail


def test_nan_token_in_json_bytes_is_non_finite() -> None:
    raw = json.dumps(heart_rate()).replace('"value": 44', '"value": NaN').encode()
    assert b"NaN" in raw
    assert reject(raw).reason is Reason.NON_FINITE_VALUE


def test_observation_from_the_future_is_impossible() -> None:
    future = RECEIVED + timedelta(minutes=6)
    err = reject(heart_rate(effectiveDateTime=future.isoformat()))
    assert err.reason is Reason.IMPOSSIBLE_TIMESTAMP
    assert only(heart_rate(effectiveDateTime=(RECEIVED + timedelta(minutes=4)).isoformat()))


# --- payload-level rejections -------------------------------------------------------------------


def test_unsupported_resource_type() -> None:
    err = reject(
        {"resourceType": "AllergyIntolerance", "id": "a", "patient": {"reference": "Patient/x"}}
    )
    assert err.reason is Reason.UNSUPPORTED_RESOURCE
    assert "AllergyIntolerance" in err.detail
    assert reject({"resourceType": "Nonsense"}).reason is Reason.UNSUPPORTED_RESOURCE
    assert reject({"id": "x"}).reason is Reason.MISSING_ELEMENT


@pytest.mark.parametrize(
    "payload",
    [b'{"resourceType": "Observation", ', b"\xff\xfe\x00", "not json", b"[1, 2]", b'"Observation"'],
)
def test_malformed_payloads(payload: bytes | str) -> None:
    assert reject(payload).reason is Reason.MALFORMED


def test_oversized_payload_is_rejected_before_parsing() -> None:
    body = json.dumps(heart_rate(note=[{"text": "x" * MAX_PAYLOAD_BYTES}])).encode()
    err = reject(body)
    assert err.reason is Reason.OVERSIZED
    assert str(MAX_PAYLOAD_BYTES) in err.detail
    # One byte below the limit is parsed (and here converted).
    padding = MAX_PAYLOAD_BYTES - len(json.dumps(heart_rate()).encode()) - 1
    small = (json.dumps(heart_rate()) + " " * padding).encode()
    assert len(small) == MAX_PAYLOAD_BYTES - 1
    assert only(small).value == 44.0


def test_naive_received_at_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        events_from_fhir(heart_rate(), received_at=datetime(2026, 1, 5, 12))  # noqa: DTZ001


def test_bytes_str_and_dict_give_equal_events() -> None:
    res = heart_rate()
    from_dict = events_from_fhir(res, received_at=RECEIVED)
    assert events_from_fhir(json.dumps(res), received_at=RECEIVED) == from_dict
    assert events_from_fhir(json.dumps(res).encode(), received_at=RECEIVED) == from_dict
    assert events_from_fhir(MappingProxyType(res), received_at=RECEIVED) == from_dict


# --- stable ids ---------------------------------------------------------------------------------


def test_redelivery_of_a_version_gives_the_same_ids_and_a_new_version_new_ones() -> None:
    first = events_from_fhir(bp_panel(), received_at=RECEIVED)
    again = events_from_fhir(bp_panel(), received_at=RECEIVED + timedelta(hours=1))
    assert [e.event_id for e in first] == [e.event_id for e in again]
    amended = bp_panel()
    amended["meta"]["versionId"] = "4"
    amended["status"] = "amended"
    changed = events_from_fhir(amended, received_at=RECEIVED)
    assert {e.event_id for e in changed}.isdisjoint(e.event_id for e in first)


def test_without_resource_id_the_event_derives_its_id_from_content() -> None:
    res = _without(heart_rate(), "id")
    one = only(res)
    two = only(copy.deepcopy(res))
    assert one.event_id.startswith("ev_")
    assert one.event_id == two.event_id
    assert one.event_id != derive_event_id("fhir", "Observation", None, "1", "8867-4")


@given(
    value=st.floats(min_value=20, max_value=300, allow_nan=False),
    version=st.text(alphabet="0123456789abc", min_size=1, max_size=6),
    indent=st.sampled_from([None, 0, 2]),
    sort_keys=st.booleans(),
)
def test_event_ids_do_not_depend_on_json_layout(
    value: float, version: str, indent: int | None, sort_keys: bool
) -> None:
    res = heart_rate(valueQuantity=qty(value, "/min"))
    res["meta"]["versionId"] = version
    [ev] = events_from_fhir(
        json.dumps(res, indent=indent, sort_keys=sort_keys).encode(), received_at=RECEIVED
    )
    assert ev.event_id == derive_event_id("fhir", "Observation", "heart-rate", version, "8867-4")
    assert ev.value == pytest.approx(value)


# --- medications --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("atc", "expected"),
    [
        ("J01CR05", MedicationClass.ANTIBIOTIC),  # piperacillin/tazobactam
        ("J01", MedicationClass.ANTIBIOTIC),
        ("C03CA01", MedicationClass.DIURETIC),  # furosemide
        ("A10AE04", MedicationClass.INSULIN),  # insulin glargine
        ("C01CA03", MedicationClass.VASOPRESSOR),  # norepinephrine
        ("C01CA24", MedicationClass.VASOPRESSOR),  # epinephrine
        ("H01BA02", MedicationClass.VASOPRESSOR),  # vasopressin
        ("B05BA03", MedicationClass.GLUCOSE),
        ("V06DC01", MedicationClass.GLUCOSE),
        ("A10BA02", MedicationClass.OTHER),  # metformin is not an insulin
        ("C01CA17", MedicationClass.OTHER),  # midodrine: oral, not a shock infusion
        ("N02BE01", MedicationClass.OTHER),  # paracetamol
        ("j01dd04", MedicationClass.ANTIBIOTIC),  # lower case ceftriaxone
    ],
)
def test_atc_classes(atc: str, expected: MedicationClass) -> None:
    ev = only(med_admin(atc))
    assert isinstance(ev, MedicationEvent)
    assert ev.medication is expected
    assert ev.code == atc.upper()


def test_medication_administration_in_progress() -> None:
    ev = only(med_admin())
    assert isinstance(ev, MedicationEvent)
    assert ev.action is MedicationAction.ADMINISTERED
    assert ev.medication is MedicationClass.VASOPRESSOR
    assert (ev.dose, ev.dose_unit) == (4.0, "mg")
    assert ev.observed_at == T10
    assert ev.event_id == derive_event_id(
        "fhir", "MedicationAdministration", "noradrenaline-1", "1", "administered"
    )


def test_completed_administration_with_effective_datetime() -> None:
    res = _without(med_admin("J01DD04", status="completed"), "effectivePeriod")
    res["effectiveDateTime"] = "2026-01-05T10:00:00Z"
    ev = only(res)
    assert (ev.action, ev.medication, ev.observed_at) == (
        MedicationAction.ADMINISTERED,
        MedicationClass.ANTIBIOTIC,
        T10,
    )


def test_stopped_administration_is_stopped_at_the_period_end() -> None:
    ev = only(
        med_admin(
            status="stopped",
            effectivePeriod={"start": "2026-01-05T08:00:00Z", "end": "2026-01-05T10:00:00Z"},
        )
    )
    assert (ev.action, ev.observed_at) == (MedicationAction.STOPPED, T10)
    assert only(med_admin(status="on-hold")).action is MedicationAction.STOPPED


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        ("not-done", "not carried"),
        ("entered-in-error", "not carried"),
        ("unknown", "not carried"),
        ("given", "R4 value set"),
    ],
)
def test_administration_statuses_not_carried(status: str, detail: str) -> None:
    err = reject(med_admin(status=status))
    assert err.reason is Reason.INVALID_STATUS
    assert detail in err.detail


def test_rxnorm_codes_from_the_explicit_table() -> None:
    res = med_admin(medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "7512"}]})
    ev = only(res)
    assert (ev.medication, ev.code) == (MedicationClass.VASOPRESSOR, "7512")
    res["medicationCodeableConcept"]["coding"][0]["code"] = "161"  # acetaminophen: not mapped
    assert reject(res).reason is Reason.UNKNOWN_CODE


def test_atc_is_preferred_over_rxnorm_and_unknown_systems_are_unsupported() -> None:
    both = {"coding": [{"system": RXNORM, "code": "161"}, {"system": ATC, "code": "J01CR05"}]}
    assert only(med_admin(medicationCodeableConcept=both)).medication is MedicationClass.ANTIBIOTIC
    snomed = {"coding": [{"system": "http://snomed.info/sct", "code": "387481005"}]}
    err = reject(med_admin(medicationCodeableConcept=snomed))
    assert err.reason is Reason.UNSUPPORTED_CODE_SYSTEM
    assert reject(med_admin("not-atc")).reason is Reason.UNKNOWN_CODE


def test_contained_medication_reference_is_resolved() -> None:
    res = _without(med_admin(), "medicationCodeableConcept")
    res["contained"] = [
        {
            "resourceType": "Medication",
            "id": "med0",
            "code": {"coding": [{"system": ATC, "code": "C03CA01"}]},
        }
    ]
    res["medicationReference"] = {"reference": "#med0"}
    assert only(res).medication is MedicationClass.DIURETIC
    res["medicationReference"] = {"reference": "Medication/elsewhere"}
    assert reject(res).reason is Reason.MISSING_ELEMENT


def test_oxygen_administration_is_oxygen_therapy_with_flow() -> None:
    res = med_admin(
        "V03AN01",
        dosage={"rateQuantity": {"value": 4, "unit": "L/min", "system": UCUM, "code": "L/min"}},
    )
    ev = only(res)
    assert isinstance(ev, OxygenTherapy)
    assert (ev.on, ev.flow_l_min, ev.observed_at) == (True, 4.0, T10)
    venturi = med_admin("V03AN01", dosage={"rateQuantity": {"value": 28, "unit": "%"}})
    assert (only(venturi).on, only(venturi).flow_l_min) == (True, None)
    stopped = med_admin(
        "V03AN01",
        status="stopped",
        effectivePeriod={"start": "2026-01-05T08:00:00Z", "end": "2026-01-05T10:00:00Z"},
    )
    off = only(stopped)
    assert (off.on, off.flow_l_min, off.observed_at) == (False, None, T10)


def test_medication_request_active_is_ordered() -> None:
    ev = only(med_request())
    assert isinstance(ev, MedicationEvent)
    assert (ev.action, ev.medication, ev.code) == (
        MedicationAction.ORDERED,
        MedicationClass.ANTIBIOTIC,
        "J01CR05",
    )
    assert (ev.dose, ev.dose_unit) == (4.5, "g")
    assert ev.observed_at == T10  # authoredOn


@pytest.mark.parametrize("status", ["stopped", "cancelled", "completed", "on-hold"])
def test_medication_request_ended_is_stopped_at_last_update(status: str) -> None:
    ev = only(med_request(status=status))
    assert ev.action is MedicationAction.STOPPED
    assert ev.observed_at == datetime(2026, 1, 5, 11, 30, tzinfo=UTC)  # meta.lastUpdated
    no_meta = _without(med_request(status=status), "meta")
    assert only(no_meta).observed_at == T10  # falls back to authoredOn


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": "draft"}, Reason.INVALID_STATUS),
        ({"status": "entered-in-error"}, Reason.INVALID_STATUS),
        ({"status": "ordered"}, Reason.INVALID_STATUS),
        ({"intent": "proposal"}, Reason.INVALID_STATUS),
        ({"doNotPerform": True}, Reason.INVALID_STATUS),
        ({"authoredOn": None}, Reason.MISSING_ELEMENT),
        ({"subject": None}, Reason.MISSING_ELEMENT),
    ],
)
def test_medication_request_rejections(changes: dict[str, Any], reason: Reason) -> None:
    res = {k: v for k, v in med_request(**changes).items() if v is not None}
    assert reject(res).reason is reason


def test_oxygen_prescription_is_not_oxygen_being_given() -> None:
    ev = only(med_request("V03AN01"))
    assert isinstance(ev, MedicationEvent)
    assert (ev.medication, ev.action, ev.code) == (
        MedicationClass.OTHER,
        MedicationAction.ORDERED,
        "V03AN01",
    )


# --- Condition ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("I50.9", Comorbidity.HEART_FAILURE),
        ("J44.1", Comorbidity.COPD),
        ("E10.9", Comorbidity.TYPE1_DIABETES),
        ("E11.65", Comorbidity.TYPE2_DIABETES),
        ("N18.4", Comorbidity.CKD),
        ("I10", Comorbidity.HYPERTENSION),
        ("I13.0", Comorbidity.HYPERTENSION),
        ("I15.9", Comorbidity.HYPERTENSION),
        ("A40.0", Comorbidity.SEPSIS),
        ("A41.9", Comorbidity.SEPSIS),
        ("R65.21", Comorbidity.SEPSIS),
        ("J96.02", Comorbidity.HYPERCAPNIC_RESPIRATORY_FAILURE),
        ("J96.12", Comorbidity.HYPERCAPNIC_RESPIRATORY_FAILURE),
        ("J96.22", Comorbidity.HYPERCAPNIC_RESPIRATORY_FAILURE),
        ("J96.92", Comorbidity.HYPERCAPNIC_RESPIRATORY_FAILURE),
        ("J9612", Comorbidity.HYPERCAPNIC_RESPIRATORY_FAILURE),
    ],
)
def test_condition_mapping(code: str, expected: Comorbidity) -> None:
    ev = only(condition(code))
    assert isinstance(ev, Diagnosis)
    assert (ev.condition, ev.code, ev.active) == (expected, code, True)
    assert ev.observed_at == T10  # onsetDateTime
    assert ev.event_id == derive_event_id("fhir", "Condition", "cond-1", None, expected.value)


@pytest.mark.parametrize("code", ["J96.01", "J96.00", "I16.0", "K35.80", "I5", "I50garbage"])
def test_conditions_the_twin_does_not_model_are_unknown_codes(code: str) -> None:
    err = reject(condition(code))
    assert err.reason is Reason.UNKNOWN_CODE
    assert code in err.detail


def test_condition_code_systems() -> None:
    cm = condition("E11.9")
    cm["code"]["coding"][0]["system"] = "http://hl7.org/fhir/sid/icd-10-cm"
    assert only(cm).condition is Comorbidity.TYPE2_DIABETES
    snomed = condition("x")
    snomed["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "84114007"}]}
    assert reject(snomed).reason is Reason.UNSUPPORTED_CODE_SYSTEM


@pytest.mark.parametrize(
    ("status", "active"),
    [
        ("active", True),
        ("recurrence", True),
        ("relapse", True),
        ("inactive", False),
        ("remission", False),
        ("resolved", False),
    ],
)
def test_condition_clinical_status(status: str, active: bool) -> None:
    assert only(condition("I50.9", status)).active is active


def test_resolved_condition_is_placed_at_its_abatement() -> None:
    res = condition("A41.9", "resolved", onsetDateTime="2025-12-20T10:00:00Z")
    ev = only({**res, "abatementDateTime": "2026-01-02T10:00:00Z"})
    assert (ev.active, ev.observed_at) == (False, datetime(2026, 1, 2, 10, tzinfo=UTC))
    assert only(res).observed_at == datetime(2025, 12, 20, 10, tzinfo=UTC)  # no abatement: onset


def test_partial_onset_falls_back_to_recorded_date() -> None:
    ev = only(condition("J44.9", onsetDateTime="2015"))
    assert ev.observed_at == datetime(2026, 1, 5, 10, 30, tzinfo=UTC)
    err = reject(condition("J44.9", onsetDateTime="2015", recordedDate="2026-01-05"))
    assert err.reason is Reason.NAIVE_TIMESTAMP
    err = reject(_without(condition("J44.9"), "onsetDateTime", "recordedDate"))
    assert err.reason is Reason.MISSING_ELEMENT


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"clinicalStatus": None}, Reason.MISSING_ELEMENT),
        ({"clinicalStatus": {"coding": [{"code": "cured"}]}}, Reason.INVALID_STATUS),
        ({"verificationStatus": {"coding": [{"code": "refuted"}]}}, Reason.INVALID_STATUS),
        ({"verificationStatus": {"coding": [{"code": "provisional"}]}}, Reason.INVALID_STATUS),
        ({"subject": None}, Reason.MISSING_ELEMENT),
    ],
)
def test_condition_rejections(changes: dict[str, Any], reason: Reason) -> None:
    res = {k: v for k, v in condition("I50.9", **changes).items() if v is not None}
    assert reject(res).reason is reason


def test_condition_without_verification_status_is_accepted() -> None:
    assert (
        only(_without(condition("I10"), "verificationStatus")).condition is Comorbidity.HYPERTENSION
    )


# --- Encounter ----------------------------------------------------------------------------------


def test_encounter_in_progress_is_an_admission() -> None:
    ev = only(encounter())
    assert isinstance(ev, Encounter)
    assert (ev.action, ev.ward) == (EncounterAction.ADMIT, "Ward 7B")
    assert ev.observed_at == datetime(2026, 1, 3, 8, 15, tzinfo=UTC)
    assert only(encounter("arrived")).action is EncounterAction.ADMIT


def test_finished_encounter_also_restates_the_admission_with_the_same_id() -> None:
    admitted = only(encounter())
    finished = encounter(
        "finished", period={"start": "2026-01-03T08:15:00Z", "end": "2026-01-05T10:00:00Z"}
    )
    finished["meta"]["versionId"] = "2"
    admit, discharge = events_from_fhir(finished, received_at=RECEIVED)
    assert (admit.action, discharge.action) == (EncounterAction.ADMIT, EncounterAction.DISCHARGE)
    assert discharge.observed_at == T10
    assert admit.event_id == admitted.event_id  # re-delivery for the twin, not a second admit
    assert discharge.event_id != admit.event_id


def test_finished_encounter_without_start_is_discharge_only() -> None:
    [ev] = events_from_fhir(
        encounter("finished", period={"end": "2026-01-05T10:00:00Z"}), received_at=RECEIVED
    )
    assert ev.action is EncounterAction.DISCHARGE


def test_encounter_ward_prefers_the_active_location_then_the_reference() -> None:
    res = encounter(
        location=[
            {"location": {"reference": "Location/ed"}, "status": "completed"},
            {"location": {"reference": "Location/w7b"}, "status": "active"},
        ]
    )
    assert only(res).ward == "Location/w7b"
    assert only(_without(encounter(), "location")).ward is None


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (encounter("planned"), Reason.INVALID_STATUS),
        (encounter("cancelled"), Reason.INVALID_STATUS),
        (encounter("discharged"), Reason.INVALID_STATUS),
        (encounter("finished"), Reason.MISSING_ELEMENT),  # no period.end
        (_without(encounter(), "period"), Reason.MISSING_ELEMENT),
        (_without(encounter(), "class"), Reason.MISSING_ELEMENT),  # 1..1 in R4
        (_without(encounter(), "subject"), Reason.MISSING_ELEMENT),
    ],
)
def test_encounter_rejections(resource: dict[str, Any], reason: Reason) -> None:
    assert reject(resource).reason is reason


# --- Patient ------------------------------------------------------------------------------------


def test_patient_is_demographics_at_last_update() -> None:
    ev = only(patient())
    assert isinstance(ev, Demographics)
    assert ev.patient_id == "example"
    assert (ev.birth_date, ev.sex) == (date(1974, 12, 25), Sex.MALE)
    assert ev.observed_at == datetime(2026, 1, 2, 9, tzinfo=UTC)
    assert ev.event_id == derive_event_id("fhir", "Patient", "example", "4", "demographics")


def test_patient_without_last_updated_uses_received_at() -> None:
    ev = only(_without(patient(gender="female"), "meta"))
    assert (ev.observed_at, ev.sex) == (RECEIVED, Sex.FEMALE)
    assert only(_without(patient(), "gender", "birthDate")).sex is Sex.UNKNOWN
    with pytest.raises(InvalidEvent) as info:
        events_from_fhir(_without(patient(), "meta"))
    assert info.value.reason is Reason.MISSING_ELEMENT


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (patient(birthDate="1974"), Reason.SCHEMA_VIOLATION),
        (patient(gender="M"), Reason.SCHEMA_VIOLATION),
        (_without(patient(), "id"), Reason.MISSING_ELEMENT),
        (patient(birthDate="2027-01-01"), Reason.IMPOSSIBLE_TIMESTAMP),
        (patient(meta={"lastUpdated": "2026-01-02T09:00:00"}), Reason.NAIVE_TIMESTAMP),
    ],
)
def test_patient_rejections(resource: dict[str, Any], reason: Reason) -> None:
    assert reject(resource).reason is reason


# --- Bundles ------------------------------------------------------------------------------------


def bundle(*resources: dict[str, Any], btype: str = "collection") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": "b1",
        "type": btype,
        "entry": [
            {
                "fullUrl": f"http://ehr.example/fhir/{r['resourceType']}/{r.get('id', i)}",
                "resource": r,
            }
            for i, r in enumerate(resources)
        ],
    }


def test_bundle_mixing_resources() -> None:
    events = events_from_fhir(
        bundle(
            patient(),
            encounter(),
            heart_rate(),
            bp_panel(),
            lab("2524-7", 4.2, "mmol/L"),
            condition("J44.1"),
            med_request(),
            med_admin(),
        ),
        received_at=RECEIVED,
    )
    assert [type(e).__name__ for e in events] == [
        "Demographics",
        "Encounter",
        "VitalSample",
        "VitalSample",
        "VitalSample",
        "LabResult",
        "Diagnosis",
        "MedicationEvent",
        "MedicationEvent",
    ]
    assert {e.patient_id for e in events} == {"example"}
    assert {e.received_at for e in events} == {RECEIVED}
    assert len({e.event_id for e in events}) == 9


@pytest.mark.parametrize("btype", ["collection", "transaction", "batch", "searchset"])
def test_accepted_bundle_types(btype: str) -> None:
    assert len(events_from_fhir(bundle(heart_rate(), btype=btype), received_at=RECEIVED)) == 1


def test_unaccepted_bundle_type_and_envelope() -> None:
    assert reject(bundle(heart_rate(), btype="history")).reason is Reason.UNSUPPORTED_RESOURCE
    assert reject(bundle(heart_rate(), btype="nonsense")).reason is Reason.UNSUPPORTED_RESOURCE
    assert reject(_without(bundle(heart_rate()), "type")).reason is Reason.MISSING_ELEMENT
    assert reject({**bundle(), "entry": "x"}).reason is Reason.SCHEMA_VIOLATION
    nested = bundle(bundle(heart_rate()))
    assert reject(nested).reason is Reason.UNSUPPORTED_RESOURCE


def test_too_many_bundle_entries_is_oversized() -> None:
    res = bundle(*[heart_rate(id=f"hr{i}") for i in range(fhir.MAX_BUNDLE_ENTRIES + 1)])
    assert reject(res).reason is Reason.OVERSIZED


def test_transaction_resolves_urn_uuid_subjects() -> None:
    pid = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
    tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": pid,
                "resource": patient(id="p-42"),
                "request": {"method": "PUT", "url": "Patient/p-42"},
            },
            {
                "fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
                "resource": heart_rate(subject={"reference": pid}),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    demo, hr = events_from_fhir(tx, received_at=RECEIVED)
    assert demo.patient_id == hr.patient_id == "p-42"
    tx["entry"][0]["resource"] = _without(patient(), "id")
    err = reject(tx)
    assert err.reason is Reason.MISSING_ELEMENT
    assert err.detail.startswith("Bundle.entry[0]")  # the id-less Patient itself fails first
    assert [r.error.reason for r in iter_fhir_results(tx, received_at=RECEIVED) if r.error] == [
        Reason.MISSING_ELEMENT,
        Reason.MISSING_ELEMENT,
    ]


def test_message_header_and_search_outcome_are_envelope() -> None:
    header = {
        "resourceType": "MessageHeader",
        "id": "h",
        "eventCoding": {"system": "urn:x", "code": "obs"},
        "source": {"endpoint": "urn:ehr"},
    }
    msg = bundle(header, heart_rate(), btype="message")
    assert [type(e) for e in events_from_fhir(msg, received_at=RECEIVED)] == [VitalSample]
    search = bundle(
        heart_rate(), {"resourceType": "OperationOutcome", "issue": []}, btype="searchset"
    )
    search["entry"][1]["search"] = {"mode": "outcome"}
    assert len(events_from_fhir(search, received_at=RECEIVED)) == 1


def test_strict_bundle_rejects_whole_bundle_naming_the_entry() -> None:
    res = bundle(heart_rate(), heart_rate(id="x", code=loinc("8302-2")), bp_panel())
    err = reject(res)
    assert err.reason is Reason.UNKNOWN_CODE
    assert err.detail.startswith("Bundle.entry[1]: ")
    assert "8302-2" in err.detail


def test_lenient_iteration_gives_per_entry_results() -> None:
    bad = heart_rate(id="x", valueQuantity=qty(float("nan"), "/min"))
    res = bundle(heart_rate(), bad, bp_panel(), {"resourceType": "Flag", "id": "f"})
    res["entry"].append({"request": {"method": "DELETE", "url": "Observation/old"}})
    results = list(iter_fhir_results(res, received_at=RECEIVED))
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [r.ok for r in results] == [True, False, True, False, False]
    assert [r.error.reason for r in results if r.error] == [
        Reason.NON_FINITE_VALUE,
        Reason.UNSUPPORTED_RESOURCE,
        Reason.MISSING_ELEMENT,
    ]
    assert results[1].resource["id"] == "x"  # the raw entry, to dead-letter on its own
    assert [len(r.events) for r in results] == [1, 0, 2, 0, 0]
    assert math.isnan(results[1].resource["valueQuantity"]["value"])


def test_lenient_iteration_of_a_bare_resource() -> None:
    [result] = iter_fhir_results(heart_rate(status="cancelled"), received_at=RECEIVED)
    assert result.index is None
    assert result.error is not None
    assert result.error.reason is Reason.INVALID_STATUS
    with pytest.raises(InvalidEvent) as info:
        list(iter_fhir_results(b"{", received_at=RECEIVED))
    assert info.value.reason is Reason.MALFORMED


def test_public_api() -> None:
    assert set(fhir.__all__) == {
        "BUNDLE_TYPES",
        "MAX_BUNDLE_ENTRIES",
        "MAX_PAYLOAD_BYTES",
        "EntryResult",
        "events_from_fhir",
        "iter_fhir_results",
    }
    assert all(hasattr(fhir, name) for name in fhir.__all__)


# ---------------------------------------------------------------------------------- Goal


def _spo2_goal(status: str, low: float, high: float) -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "id": "goal-1",
        "lifecycleStatus": status,
        "description": {"text": "Target oxygen saturation"},
        "subject": {"reference": "Patient/pt-1"},
        "startDate": "2026-01-05",
        "target": [
            {
                "measure": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
                "detailRange": {
                    "low": {"value": low, "unit": "%"},
                    "high": {"value": high, "unit": "%"},
                },
            }
        ],
    }


@pytest.mark.parametrize(
    ("status", "low", "high", "scale"),
    [
        ("active", 88, 92, 2),  # the hypercapnic target: NEWS2 scale 2
        ("active", 94, 98, 1),  # any other target stays on scale 1
        ("cancelled", 88, 92, 1),  # a withdrawn target puts the patient back on scale 1
    ],
)
def test_spo2_target_goal_sets_the_news2_scale(
    status: str, low: float, high: float, scale: int
) -> None:
    received = datetime(2026, 1, 5, 9, tzinfo=UTC)
    [event] = events_from_fhir(_spo2_goal(status, low, high), received_at=received)
    assert isinstance(event, OxygenTarget)
    assert event.spo2_scale == scale
    assert event.observed_at == received  # Goal.start is a date only


def test_goal_on_another_measure_is_rejected_as_unknown_code() -> None:
    goal = _spo2_goal("active", 88, 92)
    goal["target"][0]["measure"]["coding"][0]["code"] = "8480-6"
    with pytest.raises(InvalidEvent) as info:
        events_from_fhir(goal, received_at=datetime(2026, 1, 5, 9, tzinfo=UTC))
    assert info.value.reason is Reason.UNKNOWN_CODE
