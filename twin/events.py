"""Slim internal events: what every adapter (FHIR edge, wearable gateway, simulator) produces.

Events are immutable pydantic models discriminated by ``type``. Every event has

- ``event_id``: stable across re-delivery. Given by the source, or derived deterministically from
  the fields that identify the observation (source, device, code and time for a wearable
  sample), so a re-sent sample is recognised as the same event.
- ``patient_id``: the pseudonymous patient token (adapters replace real identifiers at ingress).
- ``observed_at``: event time, tz-aware, normalised to UTC. Naive timestamps are rejected.
- ``received_at``: optional ingress time, set by the adapter from its clock (the core never reads
  a clock). When present, an ``observed_at`` more than ``MAX_CLOCK_SKEW`` after it is rejected.

Values are converted to canonical UCUM units on construction (see ``twin.signals``).
Use ``parse_event`` to turn a JSON-like mapping into an event with a machine-readable rejection
reason on failure.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from twin.errors import InvalidEvent, Reason
from twin.signals import (
    ACVPU_CODES,
    SIGNALS,
    Acvpu,
    Signal,
    artifact_reason,
    signal_for_loinc,
    to_canonical,
)

EPOCH_FLOOR = datetime(1990, 1, 1, tzinfo=UTC)  # no wearable or EHR feed we accept predates this
MAX_CLOCK_SKEW = timedelta(minutes=5)


# Empty hashers to copy: a copy skips the constructor's keyword parsing, a quarter of the cost
# of hashing an id (these run twice for every sample on the hot path).
_BLAKE2B_16 = hashlib.blake2b(digest_size=16)
_BLAKE2B_8 = hashlib.blake2b(digest_size=8)


def derive_event_id(*parts: object) -> str:
    """A stable id from the fields that identify an event (same inputs, same id, any process)."""
    # A list, not a generator: join builds one from a generator first anyway.
    text = "\x1f".join(["" if p is None else str(p) for p in parts])
    hasher = _BLAKE2B_16.copy()
    hasher.update(text.encode())
    return "ev_" + hasher.hexdigest()


def id_hash(event_id: str) -> int:
    """A stable 63-bit integer for an event id (fits a signed 64-bit field in any encoding)."""
    hasher = _BLAKE2B_8.copy()
    hasher.update(event_id.encode())
    return int.from_bytes(hasher.digest(), "little") >> 1


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError(
            Reason.NAIVE_TIMESTAMP.value,
            "timestamp {value} has no UTC offset",
            {"value": str(value)},
        )
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        # Year 9999 with a negative offset (or year 1 with a positive one) has no UTC time.
        # Uncaught, the error escaped validation and crashed the worker on every replay.
        raise PydanticCustomError(
            Reason.IMPOSSIBLE_TIMESTAMP.value,
            "timestamp {value} has no UTC equivalent",
            {"value": value.isoformat()},
        ) from None
    if value < EPOCH_FLOOR:
        raise PydanticCustomError(
            Reason.IMPOSSIBLE_TIMESTAMP.value,
            "timestamp {value} is before 1990-01-01",
            {"value": value.isoformat()},
        )
    return value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of an aware datetime (the twin's internal clock unit)."""
    return (value - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    event_id: str = Field(default="", max_length=128)
    patient_id: str = Field(min_length=1, max_length=128)
    observed_at: datetime
    received_at: datetime | None = None
    source: str = Field(default="unknown", max_length=64)

    # ``t_ms`` and ``id_hash`` live in ``__pydantic_private__``, filled by ``_finish``. Not
    # declared as PrivateAttr: pydantic then runs its private-attribute initialiser once per
    # class in the hierarchy for every event (three times for a vital sample, ~20% of the
    # decode), only to have the values overwritten here.

    @field_validator("observed_at", "received_at")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)

    @model_validator(mode="after")
    def _finish(self) -> _Event:
        # One validator for the whole hierarchy: subclasses extend ``_check`` instead of adding
        # validators of their own, each of which costs a dispatch per event on the hot path.
        self._check()
        if self.received_at is not None and self.observed_at > self.received_at + MAX_CLOCK_SKEW:
            raise PydanticCustomError(
                Reason.IMPOSSIBLE_TIMESTAMP.value,
                "observed_at {observed} is after received_at {received} (beyond clock skew)",
                {
                    "observed": self.observed_at.isoformat(),
                    "received": self.received_at.isoformat(),
                },
            )
        if not self.event_id:
            object.__setattr__(self, "event_id", derive_event_id(*self._identity()))
        # Straight into the private slot: pydantic's __setattr__ costs a microsecond per call.
        object.__setattr__(
            self,
            "__pydantic_private__",
            {"_t_ms": to_ms(self.observed_at), "_id_hash": id_hash(self.event_id)},
        )
        return self

    def _check(self) -> None:
        """Cross-field checks and normalisation (subclasses extend; raise PydanticCustomError)."""

    def _identity(self) -> tuple[object, ...]:
        """Fields that make two deliveries the same event (subclasses extend)."""
        return (self.source, self.patient_id, type(self).__name__, self.observed_at.isoformat())

    @property
    def t_ms(self) -> int:
        """``observed_at`` as epoch milliseconds."""
        # Read the private slot directly: pydantic's ``__getattr__`` fallback costs ~1 us a call,
        # and this is on the hot path of every transition.
        private: dict[str, int] = self.__pydantic_private__  # type: ignore[assignment]
        return private["_t_ms"]

    @property
    def id_hash(self) -> int:
        """63-bit digest of ``event_id``: what twin state remembers for deduplication."""
        private: dict[str, int] = self.__pydantic_private__  # type: ignore[assignment]
        return private["_id_hash"]


class Quality(StrEnum):
    GOOD = "good"
    QUESTIONABLE = "questionable"
    ARTIFACT = "artifact"  # the device itself flagged the reading (motion, lost contact)


class _Measurement(_Event):
    code: str = Field(min_length=1, max_length=32, description="LOINC code")
    value: float
    unit: str = Field(max_length=32, description="UCUM unit; converted to the canonical one")
    signal: Signal | None = None  # derived from ``code``; given only to assert agreement

    def _check(self) -> None:
        try:
            sig = signal_for_loinc(self.code)
            if self.signal is not None and self.signal != sig:
                raise InvalidEvent(
                    Reason.UNKNOWN_CODE,
                    f"code {self.code} is {sig.value}, not {self.signal.value}",
                )
            value = to_canonical(sig, self.value, self.unit)
        except InvalidEvent as exc:
            raise PydanticCustomError(exc.reason.value, exc.detail) from None
        object.__setattr__(self, "signal", sig)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "unit", SIGNALS[sig].unit)

    @property
    def sig(self) -> Signal:
        assert self.signal is not None  # set by the validator
        return self.signal


class VitalSample(_Measurement):
    """One wearable or charted vital-sign reading."""

    type: Literal["vital"] = "vital"
    device_id: str | None = Field(default=None, max_length=128)
    quality: Quality | None = None

    def _check(self) -> None:
        super()._check()
        if SIGNALS[self.sig].kind != "vital":
            raise PydanticCustomError(
                Reason.UNKNOWN_CODE.value,
                "code {code} is a lab ({signal}); send it as a lab result",
                {"code": self.code, "signal": self.sig.value},
            )

    def _identity(self) -> tuple[object, ...]:
        # The patient is part of the identity: two patients' device-less samples from one
        # source at the same instant are two events, not a re-delivery.
        return (
            self.source,
            self.patient_id,
            self.device_id,
            self.code,
            self.observed_at.isoformat(),
        )

    def artifact(self) -> str | None:
        """Why this reading must not be scored (device flag or implausible value), else None."""
        return vital_artifact(self.sig, self.value, self.quality)


def vital_artifact(signal: Signal, value: float, quality: str | None) -> str | None:
    """Why a vital reading (canonical value) must not be scored, else None.

    The rule of ``VitalSample.artifact``, on plain values so that columnar samples
    (``twin.batch``) share it.
    """
    if quality == Quality.ARTIFACT:
        return "flagged as artifact by the device"
    return artifact_reason(signal, value)


class LabResult(_Measurement):
    """A laboratory result. ``observed_at`` is specimen collection; ``issued_at`` its release."""

    type: Literal["lab"] = "lab"
    issued_at: datetime | None = None

    @field_validator("issued_at")
    @classmethod
    def _issued_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)

    def _check(self) -> None:
        super()._check()
        if SIGNALS[self.sig].kind != "lab":
            raise PydanticCustomError(
                Reason.UNKNOWN_CODE.value,
                "code {code} is a vital sign; send it as a vital sample",
                {"code": self.code},
            )
        if self.issued_at is not None and self.issued_at < self.observed_at:
            raise PydanticCustomError(
                Reason.IMPOSSIBLE_TIMESTAMP.value, "lab issued before its specimen was collected"
            )

    def _identity(self) -> tuple[object, ...]:
        return (self.source, self.patient_id, self.code, self.observed_at.isoformat())


class MedicationClass(StrEnum):
    ANTIBIOTIC = "antibiotic"
    DIURETIC = "diuretic"
    INSULIN = "insulin"
    VASOPRESSOR = "vasopressor"
    GLUCOSE = "glucose"  # rescue dextrose/glucose for hypoglycaemia
    OTHER = "other"


class MedicationAction(StrEnum):
    ORDERED = "ordered"  # MedicationRequest active
    ADMINISTERED = "administered"  # MedicationAdministration completed
    STOPPED = "stopped"  # request stopped/cancelled/completed


class MedicationEvent(_Event):
    type: Literal["medication"] = "medication"
    medication: MedicationClass
    action: MedicationAction
    code: str = Field(default="", max_length=64)
    dose: float | None = None
    dose_unit: str | None = Field(default=None, max_length=32)

    @field_validator("dose")
    @classmethod
    def _finite_dose(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or value < 0):
            raise PydanticCustomError(Reason.NON_FINITE_VALUE.value, "dose must be finite and >= 0")
        return value

    def _identity(self) -> tuple[object, ...]:
        return (
            self.source,
            self.patient_id,
            self.medication,
            self.action,
            self.code,
            self.observed_at.isoformat(),
        )


class OxygenTherapy(_Event):
    """Supplemental oxygen started, changed or stopped. ``on`` with unknown flow is allowed."""

    type: Literal["oxygen"] = "oxygen"
    on: bool
    flow_l_min: float | None = Field(default=None, ge=0, le=80)

    def _identity(self) -> tuple[object, ...]:
        return (self.source, self.patient_id, "oxygen", self.observed_at.isoformat())


class ConsciousnessAssessment(_Event):
    type: Literal["consciousness"] = "consciousness"
    level: Acvpu

    @field_validator("level", mode="before")
    @classmethod
    def _letter(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().upper() in ACVPU_CODES:
            return ACVPU_CODES[value.strip().upper()]
        return value


class Comorbidity(StrEnum):
    HEART_FAILURE = "heart_failure"
    COPD = "copd"
    TYPE1_DIABETES = "type1_diabetes"
    TYPE2_DIABETES = "type2_diabetes"
    CKD = "ckd"
    HYPERTENSION = "hypertension"
    SEPSIS = "sepsis"
    HYPERCAPNIC_RESPIRATORY_FAILURE = "hypercapnic_respiratory_failure"


class Diagnosis(_Event):
    type: Literal["diagnosis"] = "diagnosis"
    condition: Comorbidity
    code: str = Field(default="", max_length=32, description="ICD-10 code it came from")
    active: bool = True

    def _identity(self) -> tuple[object, ...]:
        return (
            self.source,
            self.patient_id,
            self.condition,
            self.active,
            self.observed_at.isoformat(),
        )


class EncounterAction(StrEnum):
    ADMIT = "admit"
    DISCHARGE = "discharge"


class Encounter(_Event):
    type: Literal["encounter"] = "encounter"
    action: EncounterAction
    ward: str | None = Field(default=None, max_length=64)

    def _identity(self) -> tuple[object, ...]:
        return (self.source, self.patient_id, self.action, self.observed_at.isoformat())


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class Demographics(_Event):
    """Static covariates. ``observed_at`` is when the record was valid (e.g. meta.lastUpdated)."""

    type: Literal["demographics"] = "demographics"
    birth_date: date | None = None
    sex: Sex = Sex.UNKNOWN

    def _check(self) -> None:
        if self.birth_date is not None and (
            self.birth_date > self.observed_at.date() or self.birth_date.year < 1880
        ):
            raise PydanticCustomError(
                Reason.IMPOSSIBLE_TIMESTAMP.value,
                "birth date {b} is impossible",
                {"b": self.birth_date.isoformat()},
            )


class OxygenTarget(_Event):
    """A prescribed SpO2 target. Scale 2 of NEWS2 applies only with a prescribed 88-92 % target."""

    type: Literal["oxygen_target"] = "oxygen_target"
    spo2_scale: Literal[1, 2]


Event = Annotated[
    VitalSample
    | LabResult
    | MedicationEvent
    | OxygenTherapy
    | ConsciousnessAssessment
    | Diagnosis
    | Encounter
    | Demographics
    | OxygenTarget,
    Field(discriminator="type"),
]

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
_REASONS = {r.value for r in Reason}


def _reason_for(error: ValidationError) -> tuple[Reason, str]:
    first = error.errors(include_url=False)[0]
    kind = first["type"]
    loc = ".".join(str(p) for p in first["loc"])
    detail = f"{loc}: {first['msg']}" if loc else str(first["msg"])
    if kind in _REASONS:
        return Reason(kind), detail
    if kind == "missing":
        return Reason.MISSING_ELEMENT, detail
    if kind in ("finite_number",):
        return Reason.NON_FINITE_VALUE, detail
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return Reason.UNSUPPORTED_RESOURCE, detail
    return Reason.SCHEMA_VIOLATION, detail


def parse_event(payload: Mapping[str, Any]) -> Event:
    """Validate a JSON-like mapping into an event, or raise ``InvalidEvent`` with the reason."""
    try:
        return _EVENT_ADAPTER.validate_python(payload)
    except ValidationError as exc:
        reason, detail = _reason_for(exc)
        raise InvalidEvent(reason, detail) from None


def parse_event_json(data: bytes | str) -> Event:
    """Like ``parse_event`` for raw JSON bytes (malformed JSON is ``Reason.MALFORMED``)."""
    try:
        return _EVENT_ADAPTER.validate_json(data)
    except ValidationError as exc:
        reason, detail = _reason_for(exc)
        if exc.errors(include_url=False)[0]["type"] == "json_invalid":
            reason = Reason.MALFORMED
        raise InvalidEvent(reason, detail) from None


def dump_event(event: Event) -> dict[str, Any]:
    """JSON-ready dict that ``parse_event`` turns back into an equal event."""
    return event.model_dump(mode="json", exclude_none=True)
