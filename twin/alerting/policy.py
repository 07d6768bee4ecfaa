"""The alert policy: declarative rules with clinical defaults, and per-patient overrides.

A policy is data (pydantic models, loadable from JSON or YAML by an adapter). Each rule names a
*condition* (its ``kind`` and parameters) and how the lifecycle treats it:

- ``pending_for_s``: the condition must hold this long before the alert fires (filters the
  one-minute spikes a wearable produces; for a ``sustained`` rule it *is* the "for N minutes");
- ``resolve_after_s``: the condition must be false this long before the alert resolves
  (hysteresis: a value hovering at a threshold does not fire and resolve every minute);
- ``repeat_interval_s``: a firing, unacknowledged alert is re-sent this often (None: never);
- ``inhibits``: while this rule's alert is firing, the named rules' alerts for the same
  patient are muted (a high NEWS2 alert says everything a medium one would).

Why the default numbers
-----------------------
NEWS2 bands and the single-parameter trigger are the RCP 2017 escalation points; qSOFA >= 2
is the Sepsis-3 screen. The pending times are ours: the twin scores the *latest* value of a
continuously streamed signal, so one noisy sample would otherwise change the band for a
minute. Two minutes for the high band (an emergency must not wait long), five for the rest.
Repeats follow Alertmanager's habit (4 h) except the high band (1 h: RCP asks for continuous
monitoring). SpO2 "below target" uses the British Thoracic Society target ranges that NEWS2's
two scales encode: 94-98 % on scale 1, 88-92 % on scale 2; the rule fires below the lower end
(< 94, < 88) held for 10 minutes, which catches a sustained moderate desaturation that scores
only 1-2 NEWS2 points and so triggers no band rule.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from twin.errors import TwinError
from twin.signals import Signal


class AlertError(TwinError):
    """An alert policy, book or command is invalid."""


class Severity(StrEnum):
    """Alertmanager's customary severities, so receivers can route on them unchanged."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_RANK: dict[Severity, int] = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

# Lower end of the prescribed SpO2 target range per NEWS2 scale (BTS guideline; see above).
SPO2_TARGET_LOW: dict[int, float] = {1: 94.0, 2: 88.0}

_DAY_S = 86_400
_RULE_NAME = r"^[a-z][a-z0-9_]{0,63}$"


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_RULE_NAME)
    severity: Severity = Severity.WARNING
    enabled: bool = True
    pending_for_s: int = Field(default=0, ge=0, le=_DAY_S)
    resolve_after_s: int = Field(default=600, ge=0, le=_DAY_S)
    repeat_interval_s: int | None = Field(default=4 * 3600, ge=60, le=7 * _DAY_S)
    inhibits: tuple[str, ...] = ()
    description: str = Field(default="", max_length=500)


class News2BandRule(_Rule):
    """NEWS2 total at or above ``threshold`` (5: medium band, 7: high band)."""

    kind: Literal["news2_band"] = "news2_band"
    threshold: int = Field(ge=1, le=20)


class News2SingleParameterRule(_Rule):
    """Any single NEWS2 parameter scoring ``points`` or more (3: RCP's "red score")."""

    kind: Literal["news2_single_parameter"] = "news2_single_parameter"
    points: int = Field(default=3, ge=1, le=3)


class QsofaRule(_Rule):
    kind: Literal["qsofa"] = "qsofa"
    threshold: int = Field(default=2, ge=1, le=3)


class ForecastRiskRule(_Rule):
    """The forecaster's probability of ``outcome`` within ``horizon_h`` hours >= ``threshold``.

    The runtime supplies forecasts to ``evaluate``; one older than ``max_age_s`` (event time)
    no longer counts, so a stalled forecaster cannot keep an alert firing.
    """

    kind: Literal["forecast_risk"] = "forecast_risk"
    horizon_h: float = Field(gt=0, le=168)
    threshold: float = Field(gt=0, lt=1)
    outcome: str = Field(default="deterioration", max_length=64)
    max_age_s: int = Field(default=3600, gt=0, le=_DAY_S)


Comparator = Literal["<", "<=", ">", ">="]


class SustainedRule(_Rule):
    """A signal beyond a threshold for ``pending_for_s`` seconds.

    ``threshold="spo2_target"`` means "below the lower end of the patient's SpO2 target"
    (``SPO2_TARGET_LOW`` by the twin's NEWS2 scale, or the patient override's scale). The
    latest reading counts only while it is at most ``max_gap_s`` old: a sensor that stops
    reporting does not keep the condition true.
    """

    kind: Literal["sustained"] = "sustained"
    signal: Signal
    comparator: Comparator
    threshold: float | Literal["spo2_target"]
    max_gap_s: int = Field(default=300, gt=0, le=_DAY_S)

    @model_validator(mode="after")
    def _sustained(self) -> SustainedRule:
        if self.pending_for_s <= 0:
            raise ValueError("a sustained rule needs pending_for_s > 0 (how long it must hold)")
        if self.threshold == "spo2_target" and (
            self.signal is not Signal.SPO2 or self.comparator not in ("<", "<=")
        ):
            raise ValueError('threshold "spo2_target" needs signal spo2 and comparator < or <=')
        return self


Rule = Annotated[
    News2BandRule | News2SingleParameterRule | QsofaRule | ForecastRiskRule | SustainedRule,
    Field(discriminator="kind"),
]


class PatientOverride(BaseModel):
    """Per-patient changes: disable rules, replace rule fields, force the SpO2 target scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patient_id: str = Field(min_length=1, max_length=128)
    disable: tuple[str, ...] = ()
    rules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    spo2_scale: Literal[1, 2] | None = None


class AlertPolicy(BaseModel):
    """The rules every patient gets, and the overrides some patients get."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    rules: tuple[Rule, ...]
    overrides: tuple[PatientOverride, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> AlertPolicy:
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique: {names}")
        known = set(names)
        for rule in self.rules:
            bad = [n for n in rule.inhibits if n not in known or n == rule.name]
            if bad:
                raise ValueError(f"rule {rule.name} inhibits unknown or itself: {bad}")
        seen: set[str] = set()
        for ov in self.overrides:
            if ov.patient_id in seen:
                raise ValueError("one override per patient")
            seen.add(ov.patient_id)
            unknown = (set(ov.disable) | set(ov.rules)) - known
            if unknown:
                raise ValueError(f"override names unknown rules: {sorted(unknown)}")
            _overridden_rules(self.rules, ov)  # fail at load time, not at the bedside
        return self

    def override_for(self, patient_id: str) -> PatientOverride | None:
        for ov in self.overrides:
            if ov.patient_id == patient_id:
                return ov
        return None

    def rules_for(self, patient_id: str) -> tuple[Rule, ...]:
        """The enabled rules for one patient, overrides applied, in policy order."""
        ov = self.override_for(patient_id)
        rules = self.rules if ov is None else _overridden_rules(self.rules, ov)
        return tuple(r for r in rules if r.enabled)

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


def _overridden_rules(rules: tuple[Rule, ...], ov: PatientOverride) -> tuple[Rule, ...]:
    out: list[Rule] = []
    for rule in rules:
        if rule.name in ov.disable:
            continue
        update = ov.rules.get(rule.name)
        if update:
            if "name" in update or "kind" in update:
                raise ValueError("an override cannot rename a rule or change its kind")
            try:
                rule = type(rule).model_validate({**rule.model_dump(), **update})
            except ValidationError as exc:
                raise ValueError(f"override of {rule.name}: {exc}") from None
        out.append(rule)
    return tuple(out)


def load_policy(data: dict[str, Any]) -> AlertPolicy:
    """Validate a JSON-like mapping into a policy, or raise ``AlertError`` saying why."""
    try:
        return AlertPolicy.model_validate(data)
    except ValidationError as exc:
        raise AlertError(f"invalid alert policy: {exc}") from None


DEFAULT_POLICY = AlertPolicy(
    rules=(
        News2BandRule(
            name="news2_high",
            threshold=7,
            severity=Severity.CRITICAL,
            pending_for_s=120,
            resolve_after_s=900,
            repeat_interval_s=3600,
            inhibits=("news2_medium", "news2_single_parameter"),
            description="NEWS2 >= 7: emergency response, continuous monitoring (RCP 2017)",
        ),
        News2BandRule(
            name="news2_medium",
            threshold=5,
            severity=Severity.WARNING,
            pending_for_s=300,
            resolve_after_s=900,
            inhibits=("news2_single_parameter",),
            description="NEWS2 5-6: urgent response, assessment within 1 hour (RCP 2017)",
        ),
        News2SingleParameterRule(
            name="news2_single_parameter",
            severity=Severity.WARNING,
            pending_for_s=300,
            resolve_after_s=900,
            description="a single NEWS2 parameter scoring 3: urgent ward review (RCP 2017)",
        ),
        QsofaRule(
            name="qsofa",
            severity=Severity.WARNING,
            pending_for_s=300,
            resolve_after_s=900,
            description="qSOFA >= 2: screen positive for sepsis (Sepsis-3)",
        ),
        ForecastRiskRule(
            name="forecast_deterioration_12h",
            horizon_h=12,
            threshold=0.3,
            severity=Severity.WARNING,
            resolve_after_s=1800,
            description="forecast probability of deterioration within 12 h >= 30 %",
        ),
        SustainedRule(
            name="spo2_below_target",
            signal=Signal.SPO2,
            comparator="<",
            threshold="spo2_target",
            severity=Severity.WARNING,
            pending_for_s=600,
            resolve_after_s=600,
            description="SpO2 below the prescribed target range for 10 minutes (BTS)",
        ),
    )
)
