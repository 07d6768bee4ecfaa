"""Effects: what a transition asks the outside world to know or do.

Each effect has a deterministic ``effect_id`` built from the patient, the effect kind and what
triggered it (the triggering event's id, or the forecast slot). Replaying the same events over
the same state yields the same ids, so at-least-once delivery to idempotent sinks is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

from twin.events import derive_event_id, from_ms


def effect_id(kind: str, patient_id: str, *key: object) -> str:
    return "fx_" + derive_event_id(kind, patient_id, *key)[3:]


@dataclass(frozen=True, slots=True)
class _Effect:
    effect_id: str
    patient_id: str
    at_ms: int  # event time the effect refers to (the twin's watermark, or the event's time)

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: every field is a scalar, a tuple of str or a flat dict, and
        # dataclasses.asdict's recursion cost more than the JSON encoding of the effect.
        data = {}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = dict(value) if isinstance(value, dict) else value
        data["kind"] = self.kind
        data["at"] = from_ms(self.at_ms).isoformat()
        return data


@dataclass(frozen=True, slots=True)
class ScoreChanged(_Effect):
    """NEWS2 or qSOFA changed. ``points`` holds each present parameter's NEWS2 points."""

    news2_total: int
    band: str
    points: dict[str, int]
    missing: tuple[str, ...]
    qsofa_total: int
    trigger_event_id: str
    kind: ClassVar[str] = "score_changed"


@dataclass(frozen=True, slots=True)
class BandChanged(_Effect):
    previous: str
    current: str
    news2_total: int
    trigger_event_id: str
    kind: ClassVar[str] = "band_changed"


AlertRule = Literal["news2_medium", "news2_high", "news2_single_3", "qsofa"]


@dataclass(frozen=True, slots=True)
class AlertCandidate(_Effect):
    """A condition an alert rule may act on became true. The alert policy owns the lifecycle."""

    rule: str
    news2_total: int
    band: str
    points: dict[str, int]
    qsofa_total: int
    trigger_event_id: str
    kind: ClassVar[str] = "alert_candidate"


@dataclass(frozen=True, slots=True)
class ForecastDue(_Effect):
    """The twin's event time crossed a forecast slot boundary (``at_ms`` is the boundary)."""

    kind: ClassVar[str] = "forecast_due"


@dataclass(frozen=True, slots=True)
class LateEvent(_Effect):
    """A sample arrived after its window bin closed; it updated nothing but ``latest`` (if newer)."""

    event_id: str
    signal: str
    watermark_ms: int
    lag_ms: int  # how far behind the watermark the event's time was
    kind: ClassVar[str] = "late_event"


@dataclass(frozen=True, slots=True)
class ArtifactDetected(_Effect):
    event_id: str
    signal: str
    value: float
    reason: str
    kind: ClassVar[str] = "artifact"


Effect = ScoreChanged | BandChanged | AlertCandidate | ForecastDue | LateEvent | ArtifactDetected
