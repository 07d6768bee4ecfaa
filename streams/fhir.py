"""The EHR edge: FHIR R4 JSON in, slim twin events (``twin.events``) out.

Payloads are parsed once with the ``fhir.resources.R4B`` models (R4B's Observation, Quantity,
Patient, Encounter, Condition and Medication* elements used here are identical to R4's), then
converted. ``fhir.resources`` checks structure and datatypes but not terminology bindings or
profiles, so statuses, code systems and units are checked here against the R4 value sets and
twin's explicit tables (``twin.signals``); nothing is guessed. Every rejection is an
``InvalidEvent`` whose ``reason`` (``twin.errors.Reason``) the runtime dead-letters with.

Two entry points over one conversion:

- ``events_from_fhir``: strict. A bare resource or a Bundle in, all its events out, or an
  ``InvalidEvent``. A Bundle with one bad entry raises for the whole Bundle, the detail naming
  ``Bundle.entry[i]``; the runtime then dead-letters the whole Bundle with that reason (no entry
  of a half-applied Bundle reaches a twin, so re-delivery after a fix is clean).
- ``iter_fhir_results``: lenient per entry. One ``EntryResult`` per Bundle entry (events, or
  the entry's ``InvalidEvent`` plus its raw resource), so the runtime can dead-letter single
  entries. Problems with the payload as a whole (oversized, malformed JSON, bad Bundle
  envelope) still raise, as there is no entry to blame.

Choices worth knowing (each has a test):

- Event ids: a resource with an ``id`` gives ``derive_event_id("fhir", type, id, versionId,
  part)``, ``part`` being the LOINC code (one per Observation value or panel component), the
  medication action, the comorbidity or ``demographics``; re-delivery of one version gives the
  same events. Encounter events are keyed by the encounter and their event time instead of the
  version, because every version of an Encounter restates its admission. Without an ``id`` the
  event derives its id from its content.
- Time: only full FHIR dateTimes with a UTC offset place an event on the twin's timeline. A
  date-only or partial value ("2026-01-05", "2026-01") has no time of day and no offset and is
  ``NAIVE_TIMESTAMP``, like a zone-less "2026-01-05T10:00:00".
- Observation kind (vital or lab) comes from the LOINC code (``SIGNALS[...].kind``), not from
  ``category``. Censored values (``valueQuantity.comparator``, e.g. "<0.5") are rejected: the
  twin carries numbers, not bounds. In a panel (85353-1, 85354-9) components whose LOINC code
  the twin does not carry (e.g. mean arterial pressure 8478-0) and components with a
  ``dataAbsentReason`` are skipped, so a palpated systolic pressure without a diastolic still
  arrives; any other component error rejects the Observation. A panel with only ``hasMember``
  yields no events (its members arrive as Observations of their own).
- Medication: see ``_ADMIN_ACTIONS`` / ``_REQUEST_ACTIONS``. Oxygen (ATC V03AN01) given (a
  MedicationAdministration) is an ``OxygenTherapy``; oxygen *prescribed* (a MedicationRequest)
  is a ``MedicationEvent`` of class OTHER, because NEWS2 scores oxygen being breathed and most
  ward patients carry a standing oxygen prescription. A stopped administration is placed at
  ``effectivePeriod.end``; a stopped/cancelled/completed request at ``meta.lastUpdated`` (its
  ``authoredOn`` is when it was ordered), else ``authoredOn``. RxNorm: only the small ingredient
  table ``_RXNORM``; other RxNorm codes are ``UNKNOWN_CODE``.
- Condition: only the comorbidities the twin models (``_ICD10``); any other ICD-10 code is
  ``UNKNOWN_CODE`` on purpose, so the dead-letter store shows what the twin does not carry.
  Its time is the first full dateTime of ``abatementDateTime`` (inactive conditions only),
  ``onsetDateTime``, ``onsetPeriod.start``, ``recordedDate`` (a partial onset such as "2015"
  falls through). verificationStatus other than confirmed (or absent) is ``INVALID_STATUS``.
- Patient: a partial ``birthDate`` ("1974") is rejected rather than rounded to a day.
- Limits: raw bytes/str over ``MAX_PAYLOAD_BYTES`` and Bundles over ``MAX_BUNDLE_ENTRIES``
  entries are ``OVERSIZED`` before any resource is parsed.
- Encounter: a ``finished`` Encounter yields ADMIT at ``period.start`` (when present) and
  DISCHARGE at ``period.end``: this edge is stateless and cannot know whether the twin saw the
  admission, and the ADMIT's id equals the one an earlier in-progress version produced, so the
  twin treats it as re-delivery.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel
from fhir.resources.R4B.goal import Goal
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from pydantic import ValidationError

from twin.errors import InvalidEvent, Reason
from twin.events import (
    Comorbidity,
    Event,
    MedicationAction,
    MedicationClass,
    derive_event_id,
    parse_event,
)
from twin.signals import ACVPU_CODES, LOINC_TO_SIGNAL, PANEL_CODES, SIGNALS, Signal, to_canonical

__all__ = [
    "BUNDLE_TYPES",
    "MAX_BUNDLE_ENTRIES",
    "MAX_PAYLOAD_BYTES",
    "EntryResult",
    "events_from_fhir",
    "iter_fhir_results",
]

MAX_PAYLOAD_BYTES = 1 << 20  # raw bytes/str larger than 1 MiB are OVERSIZED, before decoding
MAX_BUNDLE_ENTRIES = 1000  # a Bundle with more entries is OVERSIZED (dicts have no byte size)
BUNDLE_TYPES = frozenset({"collection", "transaction", "batch", "message", "searchset"})

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10 = frozenset({"http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm"})

# R4 value sets (fhir.resources does not enforce bindings): accepted -> carried, the rest of the
# value set -> INVALID_STATUS "not carried", anything else -> INVALID_STATUS "not in R4".
_OBSERVATION_OK = frozenset({"final", "amended", "corrected", "preliminary"})
_OBSERVATION_STATUSES = _OBSERVATION_OK | {"registered", "cancelled", "entered-in-error", "unknown"}
# not-done: nothing was given; entered-in-error: a retraction, which the twin cannot carry yet.
# on-hold: the infusion is paused, so for the twin the drug is not running: STOPPED.
_ADMIN_ACTIONS = {
    "completed": MedicationAction.ADMINISTERED,
    "in-progress": MedicationAction.ADMINISTERED,
    "stopped": MedicationAction.STOPPED,
    "on-hold": MedicationAction.STOPPED,
}
_ADMIN_STATUSES = frozenset(_ADMIN_ACTIONS) | {"not-done", "entered-in-error", "unknown"}
_REQUEST_ACTIONS = {
    "active": MedicationAction.ORDERED,
    "on-hold": MedicationAction.STOPPED,
    "stopped": MedicationAction.STOPPED,
    "cancelled": MedicationAction.STOPPED,
    "completed": MedicationAction.STOPPED,
}
_REQUEST_STATUSES = frozenset(_REQUEST_ACTIONS) | {"entered-in-error", "draft", "unknown"}
_ORDER_INTENTS = frozenset(
    {"order", "original-order", "reflex-order", "filler-order", "instance-order"}
)
_ADMITTED = frozenset({"arrived", "triaged", "in-progress", "onleave"})
_ENCOUNTER_STATUSES = _ADMITTED | {
    "finished",
    "planned",
    "cancelled",
    "entered-in-error",
    "unknown",
}
_CLINICAL_STATUS = {
    "active": True,
    "recurrence": True,
    "relapse": True,
    "inactive": False,
    "remission": False,
    "resolved": False,
}
# Absent verificationStatus is accepted (problem lists often omit it); only confirmed otherwise.
_VERIFICATION_OK = frozenset({"confirmed"})
_GENDERS = frozenset({"male", "female", "other", "unknown"})

# ATC prefixes, most specific first. Midodrine (C01CA17) is an oral pressor for orthostatic
# hypotension, not a shock infusion, so it stays OTHER.
_ATC_OXYGEN = "V03AN01"
_ATC_CLASSES: tuple[tuple[str, MedicationClass], ...] = (
    ("C01CA17", MedicationClass.OTHER),
    ("C01CA", MedicationClass.VASOPRESSOR),
    ("H01BA02", MedicationClass.VASOPRESSOR),
    ("J01", MedicationClass.ANTIBIOTIC),
    ("C03", MedicationClass.DIURETIC),
    ("A10A", MedicationClass.INSULIN),
    ("B05BA03", MedicationClass.GLUCOSE),
    ("V06DC01", MedicationClass.GLUCOSE),
)
_ATC_FORMAT = re.compile(r"[A-Z](\d{2}([A-Z]([A-Z](\d{2})?)?)?)?")
# RxNorm ingredient RxCUIs for the same drugs. Deliberately small: an RxNorm code not listed
# here is UNKNOWN_CODE (it could be an antibiotic; filing it as OTHER would hide it).
_RXNORM: dict[str, MedicationClass] = {
    "7512": MedicationClass.VASOPRESSOR,  # norepinephrine
    "3992": MedicationClass.VASOPRESSOR,  # epinephrine
    "11149": MedicationClass.VASOPRESSOR,  # vasopressin
    "3628": MedicationClass.VASOPRESSOR,  # dopamine
    "3616": MedicationClass.VASOPRESSOR,  # dobutamine
    "4603": MedicationClass.DIURETIC,  # furosemide
    "274783": MedicationClass.INSULIN,  # insulin glargine
    "11124": MedicationClass.ANTIBIOTIC,  # vancomycin
    "2193": MedicationClass.ANTIBIOTIC,  # ceftriaxone
    "4850": MedicationClass.GLUCOSE,  # glucose
}

# ICD-10 prefixes (dots removed) of the comorbidities the twin models.
_ICD10: tuple[tuple[str, Comorbidity], ...] = (
    ("I50", Comorbidity.HEART_FAILURE),
    ("J44", Comorbidity.COPD),
    ("E10", Comorbidity.TYPE1_DIABETES),
    ("E11", Comorbidity.TYPE2_DIABETES),
    ("N18", Comorbidity.CKD),
    *((f"I1{d}", Comorbidity.HYPERTENSION) for d in "012345"),
    ("A40", Comorbidity.SEPSIS),
    ("A41", Comorbidity.SEPSIS),
    ("R652", Comorbidity.SEPSIS),
    *((f"J96{d}2", Comorbidity.HYPERCAPNIC_RESPIRATORY_FAILURE) for d in "0129"),
)
_ICD10_FORMAT = re.compile(r"[A-Z]\d[0-9A-Z](\.?[0-9A-Z]{1,4})?")

# ACVPU as letters (twin.signals.ACVPU_CODES) or these words, matched exactly.
_ACVPU_WORDS = {
    "alert": "A",
    "confusion": "C",
    "new confusion": "C",
    "confused": "C",
    "voice": "V",
    "pain": "P",
    "unresponsive": "U",
}

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ZONELESS = re.compile(r"\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?)?)?")
_MISSING_TYPES = frozenset({"missing", "model_field_validation.missing"})


@dataclass(frozen=True, slots=True)
class EntryResult:
    """The outcome for one resource: its events, or why it was rejected.

    ``index`` is the ``Bundle.entry`` index (None for a bare resource); ``resource`` is the
    entry's raw JSON, to dead-letter on its own.
    """

    index: int | None
    resource: Mapping[str, Any]
    events: tuple[Event, ...] = ()
    error: InvalidEvent | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def events_from_fhir(
    resource: Mapping[str, Any] | bytes | str,
    *,
    received_at: datetime | None = None,
    source: str = "ehr",
) -> list[Event]:
    """Convert one FHIR R4 resource or Bundle into twin events, strictly.

    Raises ``InvalidEvent`` for the first rejected entry; for a Bundle its detail starts with
    ``Bundle.entry[i]`` and the whole Bundle is to be dead-lettered (see the module docstring).
    ``received_at`` (tz-aware ingress time) goes into every event.
    """
    events: list[Event] = []
    for result in iter_fhir_results(resource, received_at=received_at, source=source):
        if result.error is not None:
            if result.index is None:
                raise result.error
            raise InvalidEvent(
                result.error.reason, f"Bundle.entry[{result.index}]: {result.error.detail}"
            ) from result.error
        events.extend(result.events)
    return events


def iter_fhir_results(
    resource: Mapping[str, Any] | bytes | str,
    *,
    received_at: datetime | None = None,
    source: str = "ehr",
) -> Iterator[EntryResult]:
    """Convert a resource or each Bundle entry, yielding one ``EntryResult`` per entry.

    Raises ``InvalidEvent`` only for the payload as a whole (OVERSIZED, MALFORMED, a missing or
    unsupported resourceType, a Bundle envelope that is not valid). A ``message`` Bundle's
    MessageHeader and a searchset's ``search.mode = outcome`` entries yield no events.
    """
    if received_at is not None and received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")  # a caller bug, not bad input
    raw = _decode(resource)
    rtype = _resource_type(raw)
    if rtype != "Bundle":
        yield _convert_entry(None, raw, _Context(received_at, source))
        return
    entries = _bundle_entries(raw)
    ctx = _Context(received_at, source, _bundle_patients(entries))
    for index, entry in enumerate(entries):
        res = entry.get("resource")
        if not isinstance(res, Mapping):
            err = InvalidEvent(Reason.MISSING_ELEMENT, "entry has no resource")
            yield EntryResult(index, entry, error=err)
        elif _is_envelope(raw.get("type"), index, entry, res):
            yield EntryResult(index, res)
        else:
            yield _convert_entry(index, res, ctx)


# --- payload and Bundle envelope -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    received_at: datetime | None
    source: str
    bundle_patients: Mapping[str, str | None] = field(default_factory=dict)  # fullUrl -> id


def _decode(resource: Mapping[str, Any] | bytes | str) -> Mapping[str, Any]:
    if isinstance(resource, Mapping):
        return resource if isinstance(resource, dict) else dict(resource)  # the models want dicts
    if isinstance(resource, str):
        try:
            resource = resource.encode()
        except UnicodeEncodeError as exc:
            raise InvalidEvent(Reason.MALFORMED, f"payload is not valid UTF-8: {exc}") from None
    if not isinstance(resource, bytes | bytearray):
        raise InvalidEvent(Reason.MALFORMED, f"payload is a {type(resource).__name__}")
    if len(resource) > MAX_PAYLOAD_BYTES:
        raise InvalidEvent(
            Reason.OVERSIZED, f"payload is {len(resource)} bytes; limit {MAX_PAYLOAD_BYTES}"
        )
    try:
        # json accepts NaN/Infinity tokens; the FHIR models reject them as NON_FINITE_VALUE.
        decoded = json.loads(resource)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(Reason.MALFORMED, f"payload is not valid JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise InvalidEvent(Reason.MALFORMED, "a FHIR resource is a JSON object")
    return decoded


def _resource_type(raw: Mapping[str, Any]) -> str:
    rtype = raw.get("resourceType")
    if rtype is None:
        raise InvalidEvent(Reason.MISSING_ELEMENT, "resourceType is missing")
    if not isinstance(rtype, str):
        raise InvalidEvent(Reason.SCHEMA_VIOLATION, f"resourceType {rtype!r} is not a string")
    if rtype != "Bundle" and rtype not in _CONVERTERS:
        raise InvalidEvent(
            Reason.UNSUPPORTED_RESOURCE,
            f"resourceType {rtype!r} is not converted; accepted: Bundle, {', '.join(_CONVERTERS)}",
        )
    return rtype


def _bundle_entries(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = raw.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise InvalidEvent(Reason.SCHEMA_VIOLATION, "Bundle.entry must be a list of objects")
    if len(entries) > MAX_BUNDLE_ENTRIES:
        raise InvalidEvent(
            Reason.OVERSIZED, f"Bundle has {len(entries)} entries; limit {MAX_BUNDLE_ENTRIES}"
        )
    # Validate the envelope without the resources: each resource is parsed once, on its own, so
    # that one bad entry does not hide the others.
    shell = {**raw, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in entries]}
    _validate(Bundle, shell)
    btype = raw.get("type")
    if btype not in BUNDLE_TYPES:
        raise InvalidEvent(
            Reason.UNSUPPORTED_RESOURCE,
            f"Bundle.type {btype!r} is not accepted; accepted: {sorted(BUNDLE_TYPES)}",
        )
    return entries


def _bundle_patients(entries: Sequence[Mapping[str, Any]]) -> dict[str, str | None]:
    """fullUrl -> Patient.id, to resolve ``urn:uuid:`` subjects inside a transaction."""
    out: dict[str, str | None] = {}
    for entry in entries:
        res, url = entry.get("resource"), entry.get("fullUrl")
        if (
            isinstance(url, str)
            and isinstance(res, Mapping)
            and res.get("resourceType") == "Patient"
        ):
            pid = res.get("id")
            out[url] = pid if isinstance(pid, str) else None
    return out


def _is_envelope(
    btype: object, index: int, entry: Mapping[str, Any], res: Mapping[str, Any]
) -> bool:
    if btype == "message" and index == 0 and res.get("resourceType") == "MessageHeader":
        return True
    search = entry.get("search")
    return btype == "searchset" and isinstance(search, Mapping) and search.get("mode") == "outcome"


def _convert_entry(index: int | None, raw: Mapping[str, Any], ctx: _Context) -> EntryResult:
    try:
        rtype = _resource_type(raw)
        if rtype == "Bundle":
            raise InvalidEvent(Reason.UNSUPPORTED_RESOURCE, "nested Bundles are not accepted")
        model_cls, convert = _CONVERTERS[rtype]
        events = convert(_validate(model_cls, raw), raw, ctx)
    except InvalidEvent as exc:
        return EntryResult(index, raw, error=exc)
    return EntryResult(index, raw, tuple(events))


def _validate(model_cls: type[FHIRResourceModel], raw: Mapping[str, Any]) -> Any:
    rtype = model_cls.get_resource_type()
    try:
        return model_cls.model_validate(raw)
    except ValidationError as exc:
        raise _schema_error(rtype, exc) from None
    except (KeyError, TypeError, ValueError) as exc:  # e.g. an unknown contained resource type
        raise InvalidEvent(Reason.SCHEMA_VIOLATION, f"{rtype}: {exc!r}") from None


def _schema_error(rtype: str, exc: ValidationError) -> InvalidEvent:
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = rtype + "".join(
        f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"] if p != "root"
    )
    value, msg = first.get("input"), first["msg"]
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    if first["type"] in _MISSING_TYPES:
        reason = Reason.MISSING_ELEMENT
    elif isinstance(value, float) and not math.isfinite(value):
        reason, msg = Reason.NON_FINITE_VALUE, f"{value!r} is not a finite number"
    elif _is_zoneless(value):
        reason, msg = Reason.NAIVE_TIMESTAMP, f"{value!r} has no UTC offset"
    else:
        reason = Reason.SCHEMA_VIOLATION
    return InvalidEvent(reason, f"{path}: {msg}{more}")


def _is_zoneless(value: object) -> bool:
    if not isinstance(value, str) or not _ZONELESS.fullmatch(value):
        return False
    try:
        return len(value) <= 7 or datetime.fromisoformat(value).tzinfo is None
    except ValueError:  # e.g. month 13: a plain schema violation
        return False


# --- shared element helpers --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where events come from: builds each event and its stable id."""

    resource_type: str
    resource_id: str | None
    version_id: str | None
    patient_id: str
    ctx: _Context

    def event(
        self, observed_at: datetime, part: str, fields: dict[str, Any], *, versioned: bool = True
    ) -> Event:
        payload: dict[str, Any] = {
            "patient_id": self.patient_id,
            "observed_at": observed_at,
            "received_at": self.ctx.received_at,
            "source": self.ctx.source,
            **fields,
        }
        if self.resource_id:
            version = self.version_id if versioned else None
            payload["event_id"] = derive_event_id(
                "fhir", self.resource_type, self.resource_id, version, part
            )
        try:
            return parse_event(payload)
        except InvalidEvent as exc:
            raise InvalidEvent(exc.reason, f"{self.resource_type} {part}: {exc.detail}") from None


def _origin(model: Any, ctx: _Context, patient_id: str) -> _Origin:
    meta = model.meta
    version = meta.versionId if meta is not None else None
    return _Origin(model.get_resource_type(), model.id, version, patient_id, ctx)


def _patient_id(ref: Reference | None, ctx: _Context, path: str) -> str:
    if ref is None:
        raise InvalidEvent(Reason.MISSING_ELEMENT, f"{path} is missing")
    reference = ref.reference
    if not reference:
        raise InvalidEvent(
            Reason.MISSING_ELEMENT, f"{path}.reference is missing (identifier/display only)"
        )
    if reference in ctx.bundle_patients:
        pid = ctx.bundle_patients[reference]
        if pid is None:
            raise InvalidEvent(
                Reason.MISSING_ELEMENT, f"{path} {reference} is a Patient with no id"
            )
        return pid
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient" and _FHIR_ID.fullmatch(parts[-1]):
        return parts[-1]
    if reference.startswith("urn:"):
        raise InvalidEvent(
            Reason.MISSING_ELEMENT, f"{path} {reference!r} is not a Patient entry of this Bundle"
        )
    raise InvalidEvent(Reason.SCHEMA_VIOLATION, f"{path} {reference!r} is not a Patient reference")


def _check_status(
    status: str | None, allowed: Container[str], ok: Container[str], path: str
) -> str:
    if status is None:
        raise InvalidEvent(Reason.MISSING_ELEMENT, f"{path} is missing")
    if status not in allowed:
        raise InvalidEvent(Reason.INVALID_STATUS, f"{path} {status!r} is not in the R4 value set")
    if status not in ok:
        raise InvalidEvent(Reason.INVALID_STATUS, f"{path} {status!r} is not carried")
    return status


def _when(parsed: object, raw: object, path: str) -> datetime:
    """A FHIR dateTime/instant as an aware datetime, or the precise reason it is not one."""
    if parsed is None:
        raise InvalidEvent(Reason.MISSING_ELEMENT, f"{path} is missing")
    if not isinstance(raw, str):  # pydantic would read a JSON number as epoch seconds
        raise InvalidEvent(Reason.SCHEMA_VIOLATION, f"{path} {raw!r} is not a dateTime string")
    if isinstance(parsed, datetime) and parsed.utcoffset() is not None:
        return parsed
    raise InvalidEvent(Reason.NAIVE_TIMESTAMP, f"{path} {raw!r} has no time of day and UTC offset")


def _first_when(candidates: Sequence[tuple[object, object, str]]) -> datetime:
    """The first present and full time among ``(parsed, raw, path)`` candidates."""
    error: InvalidEvent | None = None
    for parsed, raw, path in candidates:
        if parsed is not None:
            try:
                return _when(parsed, raw, path)
            except InvalidEvent as exc:
                error = error or exc
    if error is not None:
        raise error
    paths = " / ".join(path for _, _, path in candidates)
    raise InvalidEvent(Reason.MISSING_ELEMENT, f"none of {paths} is present")


def _child(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


def _codings(concept: CodeableConcept | None, path: str) -> list[tuple[str | None, str]]:
    if concept is None:
        raise InvalidEvent(Reason.MISSING_ELEMENT, f"{path} is missing")
    out = [(c.system, c.code.strip()) for c in concept.coding or () if c.code]
    if not out:
        raise InvalidEvent(Reason.MISSING_ELEMENT, f"{path} has no coding with a code")
    return out


def _unsupported_system(
    codings: Sequence[tuple[str | None, str]], wanted: str, path: str
) -> InvalidEvent:
    seen = sorted({s or "(no system)" for s, _ in codings})
    return InvalidEvent(
        Reason.UNSUPPORTED_CODE_SYSTEM, f"{path} has no {wanted} coding; got {seen}"
    )


def _unit(q: Quantity, path: str) -> str:
    if q.code and q.system == UCUM:
        return q.code
    if q.unit:
        return q.unit
    if q.code:
        raise InvalidEvent(
            Reason.UNKNOWN_UNIT, f"{path} code {q.code!r} is not UCUM (system {q.system!r})"
        )
    raise InvalidEvent(Reason.MISSING_ELEMENT, f"{path} has neither a UCUM code nor a unit")


def _dose(q: Quantity | None, path: str) -> dict[str, Any]:
    if q is None or q.value is None:
        return {}
    return {"dose": float(q.value), "dose_unit": _unit(q, path)}


# --- Observation -------------------------------------------------------------------------------


def _observation(obs: Observation, raw: Mapping[str, Any], ctx: _Context) -> list[Event]:
    _check_status(obs.status, _OBSERVATION_STATUSES, _OBSERVATION_OK, "Observation.status")
    origin = _origin(obs, ctx, _patient_id(obs.subject, ctx, "Observation.subject"))
    if obs.dataAbsentReason is not None:
        raise InvalidEvent(Reason.MISSING_ELEMENT, "Observation has a dataAbsentReason, no value")
    codings = _codings(obs.code, "Observation.code")
    loinc = [code for system, code in codings if system == LOINC]
    if not loinc:
        raise _unsupported_system(codings, "LOINC", "Observation.code")
    known = [c for c in loinc if c in LOINC_TO_SIGNAL or c in PANEL_CODES]
    if not known:
        raise InvalidEvent(Reason.UNKNOWN_CODE, f"LOINC {loinc} is not a signal vitaltwin carries")
    code = known[0]
    period = _child(raw, "effectivePeriod")
    observed_at = _first_when(
        (
            (obs.effectiveDateTime, raw.get("effectiveDateTime"), "Observation.effectiveDateTime"),
            (obs.effectiveInstant, raw.get("effectiveInstant"), "Observation.effectiveInstant"),
            (
                obs.effectivePeriod and obs.effectivePeriod.start,
                period.get("start"),
                "Observation.effectivePeriod.start",
            ),
        )
    )
    extra: dict[str, Any] = {}
    if obs.issued is not None:
        extra["issued_at"] = _when(obs.issued, raw.get("issued"), "Observation.issued")
    if obs.device is not None and obs.device.reference:
        ref = obs.device.reference
        extra["device_id"] = ref.removeprefix("Device/") if ref.startswith("Device/") else ref
    if code not in PANEL_CODES:
        return [_value_event(code, obs, origin, observed_at, extra, "Observation")]
    return _panel(code, obs, origin, observed_at, extra)


def _panel(
    code: str, obs: Observation, origin: _Origin, observed_at: datetime, extra: dict[str, Any]
) -> list[Event]:
    if not obs.component:
        if obs.hasMember:
            return []  # the members are Observations of their own
        raise InvalidEvent(Reason.MISSING_ELEMENT, f"panel {code} has no component")
    events: list[Event] = []
    seen: set[str] = set()
    absent = 0
    for i, comp in enumerate(obs.component):
        where = f"Observation.component[{i}]"
        codings = _codings(comp.code, f"{where}.code")
        loinc = [c for system, c in codings if system == LOINC]
        if not loinc:
            raise _unsupported_system(codings, "LOINC", f"{where}.code")
        carried = [c for c in loinc if c in LOINC_TO_SIGNAL]
        if not carried:
            continue  # e.g. mean arterial pressure in a BP panel: not a signal the twin carries
        if carried[0] in seen:
            raise InvalidEvent(Reason.SCHEMA_VIOLATION, f"{where}: {carried[0]} appears twice")
        seen.add(carried[0])
        if comp.dataAbsentReason is not None:
            absent += 1
            continue
        events.append(_value_event(carried[0], comp, origin, observed_at, extra, where))
    if not events:
        reason = Reason.MISSING_ELEMENT if absent else Reason.UNKNOWN_CODE
        raise InvalidEvent(reason, f"panel {code} has no component value the twin carries")
    return events


def _value_event(
    code: str,
    holder: Observation | ObservationComponent,
    origin: _Origin,
    observed_at: datetime,
    extra: dict[str, Any],
    where: str,
) -> Event:
    signal = LOINC_TO_SIGNAL[code]
    if signal is Signal.CONSCIOUSNESS:
        fields: dict[str, Any] = {"type": "consciousness", "level": _acvpu(holder, where)}
        return origin.event(observed_at, code, fields)
    q = holder.valueQuantity
    if q is None:
        raise InvalidEvent(Reason.MISSING_ELEMENT, f"{where} has no valueQuantity")
    if q.value is None:
        raise InvalidEvent(Reason.MISSING_ELEMENT, f"{where}.valueQuantity.value is missing")
    if q.comparator is not None:
        raise InvalidEvent(
            Reason.SCHEMA_VIOLATION,
            f"{where}.valueQuantity is censored ({q.comparator}{q.value}); the twin carries values",
        )
    value, unit = float(q.value), _unit(q, f"{where}.valueQuantity")
    if signal is Signal.O2_FLOW:
        try:
            flow = to_canonical(signal, value, unit)
        except InvalidEvent as exc:
            raise InvalidEvent(exc.reason, f"{where}: {exc.detail}") from None
        return origin.event(
            observed_at, code, {"type": "oxygen", "on": flow > 0, "flow_l_min": flow}
        )
    fields = {"code": code, "value": value, "unit": unit}
    if SIGNALS[signal].kind == "lab":
        fields.update(type="lab", issued_at=extra.get("issued_at"))
    else:
        fields.update(type="vital", device_id=extra.get("device_id"))
    return origin.event(observed_at, code, fields)


def _acvpu(holder: Observation | ObservationComponent, where: str) -> str:
    candidates: list[str] = []
    if holder.valueString is not None:
        candidates.append(holder.valueString)
    concept = holder.valueCodeableConcept
    if concept is not None:
        candidates += [c.code for c in concept.coding or () if c.code]
        candidates += [c.display for c in concept.coding or () if c.display]
        candidates += [concept.text] if concept.text else []
    if not candidates:
        raise InvalidEvent(
            Reason.MISSING_ELEMENT, f"{where} has no valueString or valueCodeableConcept"
        )
    for text in candidates:
        letter = text.strip().upper()
        letter = letter if letter in ACVPU_CODES else _ACVPU_WORDS.get(text.strip().lower(), "")
        if letter:
            return letter
    raise InvalidEvent(Reason.UNKNOWN_CODE, f"{where} {candidates} is not an ACVPU level")


# --- medications -------------------------------------------------------------------------------


def _medication_code(
    model: MedicationAdministration | MedicationRequest, path: str
) -> tuple[str, MedicationClass | None]:
    """(code, class) of the medication; class None means oxygen."""
    concept = model.medicationCodeableConcept
    if concept is None and model.medicationReference is not None:
        concept = _contained_medication(model, model.medicationReference.reference, path)
    codings = _codings(concept, f"{path}.medicationCodeableConcept")
    for system, code in codings:
        if system == ATC:
            atc = code.upper()
            if not _ATC_FORMAT.fullmatch(atc):
                raise InvalidEvent(Reason.UNKNOWN_CODE, f"{code!r} is not an ATC code")
            if atc == _ATC_OXYGEN:
                return atc, None
            for prefix, cls in _ATC_CLASSES:
                if atc.startswith(prefix):
                    return atc, cls
            return atc, MedicationClass.OTHER
    for system, code in codings:
        if system == RXNORM:
            if code not in _RXNORM:
                raise InvalidEvent(
                    Reason.UNKNOWN_CODE, f"RxNorm {code} is not in the mapped table (send ATC)"
                )
            return code, _RXNORM[code]
    raise _unsupported_system(codings, "ATC or RxNorm", f"{path}.medication")


def _contained_medication(model: Any, reference: str | None, path: str) -> CodeableConcept | None:
    if reference and reference.startswith("#"):
        for res in model.contained or ():
            if res.get_resource_type() == "Medication" and res.id == reference[1:]:
                code: CodeableConcept | None = res.code
                return code
    raise InvalidEvent(
        Reason.MISSING_ELEMENT,
        f"{path}.medicationReference {reference!r} is not a contained Medication; "
        "send medicationCodeableConcept",
    )


def _medication_administration(
    admin: MedicationAdministration, raw: Mapping[str, Any], ctx: _Context
) -> list[Event]:
    path = "MedicationAdministration"
    status = _check_status(admin.status, _ADMIN_STATUSES, _ADMIN_ACTIONS, f"{path}.status")
    action = _ADMIN_ACTIONS[status]
    origin = _origin(admin, ctx, _patient_id(admin.subject, ctx, f"{path}.subject"))
    code, cls = _medication_code(admin, path)
    period = _child(raw, "effectivePeriod")
    start = (
        (admin.effectiveDateTime, raw.get("effectiveDateTime"), f"{path}.effectiveDateTime"),
        (
            admin.effectivePeriod and admin.effectivePeriod.start,
            period.get("start"),
            f"{path}.effectivePeriod.start",
        ),
    )
    end = (
        admin.effectivePeriod and admin.effectivePeriod.end,
        period.get("end"),
        f"{path}.effectivePeriod.end",
    )
    # A stop happens at the end of the period; without one, at the recorded time.
    observed_at = _first_when((end, *start) if action is MedicationAction.STOPPED else start)
    dosage = admin.dosage
    if cls is None:
        flow = _flow(dosage.rateQuantity if dosage else None)
        on = action is MedicationAction.ADMINISTERED
        fields = {"type": "oxygen", "on": on, "flow_l_min": flow if on else None}
        return [origin.event(observed_at, action.value, fields)]
    # A bolus states a dose, an infusion a rate: carry whichever is given.
    if dosage is not None and dosage.dose is None and dosage.rateQuantity is not None:
        amount = _dose(dosage.rateQuantity, f"{path}.dosage.rateQuantity")
    else:
        amount = _dose(dosage.dose if dosage else None, f"{path}.dosage.dose")
    fields = {
        "type": "medication",
        "medication": cls,
        "action": action,
        "code": code,
        **amount,
    }
    return [origin.event(observed_at, action.value, fields)]


def _flow(rate: Quantity | None) -> float | None:
    """Oxygen flow from a rate in L/min; any other rate unit (e.g. FiO2 %) gives no flow."""
    if rate is None or rate.value is None:
        return None
    try:
        return to_canonical(Signal.O2_FLOW, float(rate.value), _unit(rate, "rateQuantity"))
    except InvalidEvent as exc:
        if exc.reason in (Reason.UNKNOWN_UNIT, Reason.MISSING_ELEMENT):
            return None
        raise


def _medication_request(
    req: MedicationRequest, raw: Mapping[str, Any], ctx: _Context
) -> list[Event]:
    path = "MedicationRequest"
    status = _check_status(req.status, _REQUEST_STATUSES, _REQUEST_ACTIONS, f"{path}.status")
    action = _REQUEST_ACTIONS[status]
    if req.intent not in _ORDER_INTENTS:
        raise InvalidEvent(Reason.INVALID_STATUS, f"{path}.intent {req.intent!r} is not an order")
    if req.doNotPerform:
        raise InvalidEvent(Reason.INVALID_STATUS, f"{path}.doNotPerform: an order not to give")
    origin = _origin(req, ctx, _patient_id(req.subject, ctx, f"{path}.subject"))
    code, cls = _medication_code(req, path)
    authored = (req.authoredOn, raw.get("authoredOn"), f"{path}.authoredOn")
    if action is MedicationAction.STOPPED and req.meta is not None and req.meta.lastUpdated:
        # authoredOn is when it was ordered; the stop is the change that made this version.
        raw_meta = _child(raw, "meta")
        observed_at = _when(
            req.meta.lastUpdated, raw_meta.get("lastUpdated"), f"{path}.meta.lastUpdated"
        )
    else:
        observed_at = _first_when((authored,))
    dose_q, dose_path = None, f"{path}.dosageInstruction[0].doseAndRate[0]"
    if req.dosageInstruction and req.dosageInstruction[0].doseAndRate:
        dose_and_rate = req.dosageInstruction[0].doseAndRate[0]
        # An infusion or oxygen order states a rate, not a dose: carry whichever is given.
        if dose_and_rate.doseQuantity is not None:
            dose_q, dose_path = dose_and_rate.doseQuantity, f"{dose_path}.doseQuantity"
        elif dose_and_rate.rateQuantity is not None:
            dose_q, dose_path = dose_and_rate.rateQuantity, f"{dose_path}.rateQuantity"
    fields = {
        "type": "medication",
        "action": action,
        "code": code,
        "medication": MedicationClass.OTHER if cls is None else cls,
        **_dose(dose_q, dose_path),
    }
    return [origin.event(observed_at, action.value, fields)]


# --- Condition, Encounter, Patient -------------------------------------------------------------


def _condition(cond: Condition, raw: Mapping[str, Any], ctx: _Context) -> list[Event]:
    clinical = [c for _, c in _codings(cond.clinicalStatus, "Condition.clinicalStatus")]
    if clinical[0] not in _CLINICAL_STATUS:
        raise InvalidEvent(
            Reason.INVALID_STATUS, f"Condition.clinicalStatus {clinical[0]!r} is not in R4"
        )
    active = _CLINICAL_STATUS[clinical[0]]
    if cond.verificationStatus is not None:
        verification = _codings(cond.verificationStatus, "Condition.verificationStatus")[0][1]
        if verification not in _VERIFICATION_OK:
            raise InvalidEvent(
                Reason.INVALID_STATUS,
                f"Condition.verificationStatus {verification!r} is not carried",
            )
    origin = _origin(cond, ctx, _patient_id(cond.subject, ctx, "Condition.subject"))
    codings = _codings(cond.code, "Condition.code")
    icd = [code for system, code in codings if system in ICD10]
    if not icd:
        raise _unsupported_system(codings, "ICD-10", "Condition.code")
    match = _comorbidity(icd)
    if match is None:
        raise InvalidEvent(
            Reason.UNKNOWN_CODE, f"ICD-10 {icd} is not a comorbidity the twin models"
        )
    code, comorbidity = match
    candidates = [
        (cond.onsetDateTime, raw.get("onsetDateTime"), "Condition.onsetDateTime"),
        (
            cond.onsetPeriod and cond.onsetPeriod.start,
            _child(raw, "onsetPeriod").get("start"),
            "Condition.onsetPeriod.start",
        ),
        (cond.recordedDate, raw.get("recordedDate"), "Condition.recordedDate"),
    ]
    if not active:  # the resolution is the event, when it is known
        abated = (
            cond.abatementDateTime,
            raw.get("abatementDateTime"),
            "Condition.abatementDateTime",
        )
        candidates.insert(0, abated)
    fields = {"type": "diagnosis", "condition": comorbidity, "code": code, "active": active}
    return [origin.event(_first_when(candidates), comorbidity.value, fields)]


def _comorbidity(codes: Sequence[str]) -> tuple[str, Comorbidity] | None:
    for code in codes:
        norm = code.upper()
        if not _ICD10_FORMAT.fullmatch(norm):
            continue
        norm = norm.replace(".", "")
        for prefix, comorbidity in _ICD10:
            if norm.startswith(prefix):
                return code, comorbidity
    return None


def _encounter(enc: Encounter, raw: Mapping[str, Any], ctx: _Context) -> list[Event]:
    status = _check_status(
        enc.status, _ENCOUNTER_STATUSES, _ADMITTED | {"finished"}, "Encounter.status"
    )
    origin = _origin(enc, ctx, _patient_id(enc.subject, ctx, "Encounter.subject"))
    ward = None
    if enc.location:
        chosen = next((loc for loc in enc.location if loc.status == "active"), enc.location[0])
        ward = chosen.location.display or chosen.location.reference
    period, raw_period = enc.period, _child(raw, "period")
    start = (period and period.start, raw_period.get("start"), "Encounter.period.start")
    events = []
    if status in _ADMITTED or start[0] is not None:
        at = _when(*start)
        fields = {"type": "encounter", "action": "admit", "ward": ward}
        events.append(origin.event(at, f"admit@{at.isoformat()}", fields, versioned=False))
    if status == "finished":
        at = _when(period and period.end, raw_period.get("end"), "Encounter.period.end")
        fields = {"type": "encounter", "action": "discharge", "ward": ward}
        events.append(origin.event(at, f"discharge@{at.isoformat()}", fields, versioned=False))
    return events


def _patient(pat: Patient, raw: Mapping[str, Any], ctx: _Context) -> list[Event]:
    if not pat.id:
        raise InvalidEvent(Reason.MISSING_ELEMENT, "Patient.id is missing")
    birth: date | None = None
    if pat.birthDate is not None:
        if not isinstance(raw.get("birthDate"), str) or not isinstance(pat.birthDate, date):
            raise InvalidEvent(
                Reason.SCHEMA_VIOLATION,
                f"Patient.birthDate {raw.get('birthDate')!r} is not a full date",
            )
        birth = pat.birthDate
    if pat.gender is not None and pat.gender not in _GENDERS:
        raise InvalidEvent(Reason.SCHEMA_VIOLATION, f"Patient.gender {pat.gender!r} is not in R4")
    if pat.meta is not None and pat.meta.lastUpdated is not None:
        raw_meta = _child(raw, "meta")
        observed_at = _when(
            pat.meta.lastUpdated, raw_meta.get("lastUpdated"), "Patient.meta.lastUpdated"
        )
    elif ctx.received_at is not None:
        observed_at = ctx.received_at
    else:
        raise InvalidEvent(
            Reason.MISSING_ELEMENT, "Patient.meta.lastUpdated is missing and no received_at given"
        )
    origin = _origin(pat, ctx, pat.id)
    fields = {"type": "demographics", "birth_date": birth, "sex": pat.gender or "unknown"}
    return [origin.event(observed_at, "demographics", fields)]


# A prescribed SpO2 target is a Goal on LOINC 59408-5/2708-6. NEWS2 scale 2 applies only to a
# prescribed 88-92 % target (RCP 2017); any other SpO2 target, or a goal no longer in force,
# puts the patient back on scale 1.
_SPO2_CODES = frozenset({"59408-5", "2708-6"})
_GOAL_IN_FORCE = frozenset({"proposed", "planned", "accepted", "active", "on-hold"})
_GOAL_ENDED = frozenset({"completed", "cancelled", "rejected"})


def _goal(goal: Goal, raw: Mapping[str, Any], ctx: _Context) -> list[Event]:
    status = goal.lifecycleStatus
    if status not in _GOAL_IN_FORCE | _GOAL_ENDED:
        raise InvalidEvent(Reason.INVALID_STATUS, f"Goal.lifecycleStatus {status!r} is not carried")
    patient_id = _patient_id(goal.subject, ctx, "Goal.subject")
    scale: int | None = None
    for i, target in enumerate(goal.target or ()):
        codes = {
            code
            for system, code in _codings(target.measure, f"Goal.target[{i}].measure")
            if system == LOINC
        }
        if not codes & _SPO2_CODES:
            continue
        rng = target.detailRange
        low = None if rng is None or rng.low is None else rng.low.value
        high = None if rng is None or rng.high is None else rng.high.value
        if low is None or high is None:
            raise InvalidEvent(
                Reason.MISSING_ELEMENT, f"Goal.target[{i}].detailRange needs low and high"
            )
        scale = 2 if (float(low), float(high)) == (88.0, 92.0) else 1
    if scale is None:
        raise InvalidEvent(
            Reason.UNKNOWN_CODE, "Goal has no SpO2 target (LOINC 59408-5); no other goal is carried"
        )
    if status in _GOAL_ENDED:
        scale = 1
    if goal.meta is not None and goal.meta.lastUpdated is not None:
        observed_at = _when(
            goal.meta.lastUpdated, _child(raw, "meta").get("lastUpdated"), "Goal.meta.lastUpdated"
        )
    elif ctx.received_at is not None:
        # Goal.start is a date only; the time the target became known is when we received it.
        observed_at = ctx.received_at
    else:
        raise InvalidEvent(
            Reason.MISSING_ELEMENT, "Goal.meta.lastUpdated is missing and no received_at given"
        )
    origin = _origin(goal, ctx, patient_id)
    return [
        origin.event(observed_at, "spo2-target", {"type": "oxygen_target", "spo2_scale": scale})
    ]


_CONVERTERS: dict[str, tuple[type[FHIRResourceModel], Any]] = {
    "Goal": (Goal, _goal),
    "Observation": (Observation, _observation),
    "MedicationAdministration": (MedicationAdministration, _medication_administration),
    "MedicationRequest": (MedicationRequest, _medication_request),
    "Condition": (Condition, _condition),
    "Encounter": (Encounter, _encounter),
    "Patient": (Patient, _patient),
}
