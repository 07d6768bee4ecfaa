"""The API's request and response bodies (pydantic): what the OpenAPI schema documents.

Times are epoch milliseconds (``*_ms``, event time, UTC), as everywhere in vitaltwin; values are
in the canonical units of ``twin.signals.SIGNALS``. Patient ids are pseudonymous tokens.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

MAX_PAGE = 500


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Out):
    code: str = Field(examples=["unauthorized"])
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorBody(_Out):
    error: ErrorDetail


class Page(_Out, Generic[T]):
    items: list[T]
    total: int = Field(ge=0, description="items matching the query, over all pages")
    limit: int
    offset: int


class Reading(_Out):
    value: float
    t_ms: int = Field(description="observed time, epoch ms")
    unit: str


class Sparkline(_Out):
    signal: str
    bin_ms: int
    end_ms: int = Field(description="end of the last bin, epoch ms")
    values: list[float | None] = Field(description="bin means, oldest first; null: no sample")


class Alert(_Out):
    alert_id: str
    patient_id: str
    ward: str | None = None
    rule: str
    severity: str
    status: Literal["firing", "acknowledged", "resolved"]
    starts_ms: int
    ends_ms: int | None = None
    acknowledged_by: str | None = None
    acknowledged_ms: int | None = None
    notifications: int
    last_at_ms: int
    summary: str


class RiskPoint(_Out):
    horizon_h: float
    probability: float = Field(ge=0, le=1)
    lower: float | None = None
    upper: float | None = None


class QuantilePoint(_Out):
    t_ms: int
    horizon_min: int
    quantiles: dict[str, float] = Field(
        description='quantile level -> value, e.g. {"0.1": 82.0, "0.5": 88.5, "0.9": 96.0}'
    )


class QuantileSeries(_Out):
    signal: str
    points: list[QuantilePoint]


class Driver(_Out):
    feature: str
    weight: float
    detail: str = ""


class Forecast(_Out):
    made_at_ms: int
    model: str = "unknown"
    outcome: str = "deterioration"
    risk: list[RiskPoint] = Field(default_factory=list)
    quantiles: list[QuantileSeries] = Field(default_factory=list)
    explanation: list[Driver] = Field(default_factory=list)


class PatientSummary(_Out):
    """One ward tile."""

    patient_id: str
    ward: str | None = None
    news2_total: int
    news2_band: str
    news2_complete: bool = Field(description="every NEWS2 parameter had a current value")
    qsofa_total: int
    watermark_ms: int
    vitals: dict[str, Reading] = Field(description="latest vital signs by signal")
    sparkline: Sparkline | None = None
    forecast_risk: float | None = Field(
        default=None, description="highest forecast probability over the horizons, if any"
    )
    risk_trajectory: list[RiskPoint] = Field(default_factory=list)
    alerts: list[Alert] = Field(default_factory=list, description="firing and acknowledged")


class Medication(_Out):
    medication: str
    action: str
    first_ms: int | None = None
    last_ms: int
    dose: float | None = None


class Twin(PatientSummary):
    """One patient's twin: the tile plus everything the patient view shows."""

    news2_points: dict[str, int]
    news2_missing: list[str]
    qsofa_points: dict[str, int]
    spo2_scale: int
    on_oxygen: bool | None = None
    labs: dict[str, Reading] = Field(default_factory=dict)
    medications: list[Medication] = Field(default_factory=list)
    conditions: list[str] = Field(default_factory=list)
    forecast: Forecast | None = Field(default=None, description="null: no forecast yet")
    late_events: int
    artifacts: int


class HistoryPoint(_Out):
    t_ms: int
    value: float


class History(_Out):
    patient_id: str
    signal: str
    unit: str
    start_ms: int
    end_ms: int
    binned: bool = Field(description="true: 5-minute bin means from the twin's window")
    points: list[HistoryPoint]
    total: int
    limit: int
    offset: int


class AlertCommandIn(BaseModel):
    """Body of acknowledge / unacknowledge / annotate. Who acted comes from the token."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000)
    label: Literal["false_alarm", "true_alarm", "treated", "escalated", "other"] | None = None


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: str | None = Field(default=None, max_length=64, description="null: every rule")
    minutes: float = Field(gt=0, le=7 * 24 * 60)
    reason: str = Field(min_length=1, max_length=2000)


class CommandReceipt(_Out):
    audit_id: str
    command_id: str
    action: str
    alert: Alert | None = None


class DeadLetterOut(_Out):
    dead_letter_id: str
    reason: str
    detail: str


class IngestReceipt(_Out):
    received: int = Field(description="items in the request (samples, or 1 per FHIR resource)")
    accepted: int
    dead_lettered: list[DeadLetterOut]
    applied: bool = Field(description="true: already in the twins; false: queued for them")
