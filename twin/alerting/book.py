"""What the alert policy keeps per patient (``AlertBook``) and what it emits (``Notification``).

An ``AlertBook`` is one patient's alert state: the alerts that are pending, firing or
acknowledged (at most one per rule), a short history of resolved ones, silences, the latest
forecast and the ids of recently applied commands. It is immutable, versioned and serialises
to JSON; its size is bounded by the number of rules plus the fixed caps below, whatever the
length of the stay.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin.alerting.policy import AlertError, Severity
from twin.events import derive_event_id

SCHEMA_VERSION: Literal[1] = 1
HISTORY_LIMIT = 16  # resolved alerts kept for annotation and review
SILENCE_LIMIT = 32  # active and future silences per patient
COMMAND_MEMORY = 64  # applied command ids remembered, so a re-delivered command is a no-op
LABEL_LIMIT = 8  # annotation labels kept on one alert (the audit log keeps them all)

AlertStatus = Literal["pending", "firing", "acknowledged", "resolved"]
FIRING_STATUSES: frozenset[str] = frozenset({"firing", "acknowledged"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Driver(_Frozen):
    """One input that pushed a forecast up (or down): the forecaster's explanation."""

    feature: str = Field(max_length=128)
    weight: float
    detail: str = Field(default="", max_length=256)


class ForecastRisk(_Frozen):
    """A forecast as the runtime hands it to ``evaluate``.

    ``risk`` maps a horizon in hours to the probability of ``outcome`` within that horizon.
    """

    made_at_ms: int
    risk: dict[float, float]
    model: str = Field(default="unknown", max_length=128)
    outcome: str = Field(default="deterioration", max_length=64)
    explanation: tuple[Driver, ...] = Field(default=(), max_length=32)


class ForecastWhy(_Frozen):
    horizon_h: float
    probability: float
    threshold: float
    outcome: str
    model: str
    made_at_ms: int
    explanation: tuple[Driver, ...] = ()


class Why(_Frozen):
    """Why an alert fired (or still fires, or resolved): the evidence at that moment."""

    rule: str
    kind: str
    summary: str
    values: dict[str, float] = Field(default_factory=dict)  # parameter -> latest value used
    observed_at_ms: dict[str, int] = Field(default_factory=dict)
    news2_total: int = 0
    news2_band: str = "routine"
    news2_points: dict[str, int] = Field(default_factory=dict)
    news2_missing: tuple[str, ...] = ()
    qsofa_total: int = 0
    spo2_scale: int = 1
    threshold: float | None = None
    forecast: ForecastWhy | None = None


class AlertRecord(_Frozen):
    """One rule's alert episode for one patient."""

    rule: str
    fingerprint: str
    status: AlertStatus
    severity: Severity = Severity.WARNING
    since_ms: int  # the condition first held (start of the pending period)
    alert_id: str = ""  # given when the alert fires
    fired_at_ms: int | None = None
    false_since_ms: int | None = None  # the condition stopped holding (resolve hysteresis)
    resolved_at_ms: int | None = None
    notified: bool = False  # a firing notification went out in this episode
    last_notified_ms: int | None = None
    notifications: int = 0
    acknowledged_by: str | None = None
    acknowledged_at_ms: int | None = None
    labels: tuple[str, ...] = ()
    why: Why | None = None  # the evidence when it fired


class Silence(_Frozen):
    """Mute one rule (or all, ``rule=None``) for one patient in ``[starts_ms, ends_ms)``."""

    silence_id: str
    rule: str | None
    starts_ms: int
    ends_ms: int
    by: str
    reason: str

    def mutes(self, rule: str, at_ms: int) -> bool:
        return self.starts_ms <= at_ms < self.ends_ms and self.rule in (None, rule)


class AlertBook(_Frozen):
    schema_version: Literal[1] = SCHEMA_VERSION
    patient_id: str = Field(min_length=1, max_length=128)
    evaluated_at_ms: int = -1
    active: dict[str, AlertRecord] = Field(default_factory=dict)  # rule -> open episode
    history: tuple[AlertRecord, ...] = ()  # resolved, oldest first
    silences: tuple[Silence, ...] = ()
    forecast: ForecastRisk | None = None
    applied_commands: tuple[str, ...] = ()

    def find(self, alert_id: str) -> AlertRecord | None:
        """An alert by id among the open and recently resolved ones."""
        for rec in self.active.values():
            if rec.alert_id == alert_id:
                return rec
        for rec in self.history:
            if rec.alert_id == alert_id:
                return rec
        return None

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes | str) -> AlertBook:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise AlertError(f"unreadable alert book (schema {SCHEMA_VERSION}): {exc}") from None


NotificationReason = Literal["fired", "repeat", "resolved"]


class Notification(_Frozen):
    """Something receivers must hear about: an alert fired, is still firing, or resolved.

    ``notification_id`` is derived from the fingerprint, the episode, the status, the reason
    and the event time, so replaying the same inputs yields the same ids (receivers and the
    outbox deduplicate on them).
    """

    notification_id: str
    alert_id: str
    fingerprint: str
    patient_id: str
    ward: str | None
    rule: str
    kind: str
    severity: Severity
    status: Literal["firing", "resolved"]
    reason: NotificationReason
    at_ms: int
    starts_at_ms: int
    ends_at_ms: int | None = None
    acknowledged: bool = False
    group_key: str
    why: Why
    description: str = ""


def fingerprint(patient_id: str, rule: str) -> str:
    """16 hex digits, the same form Alertmanager uses, stable for (patient, rule)."""
    return derive_event_id("alert_fingerprint", patient_id, rule)[3:19]


def alert_id(fp: str, fired_at_ms: int) -> str:
    return "al_" + derive_event_id("alert", fp, fired_at_ms)[3:]


def notification_id(fp: str, alert: str, status: str, reason: str, at_ms: int) -> str:
    return "nt_" + derive_event_id("notification", fp, alert, status, reason, at_ms)[3:]
