"""The processing both runtimes share: ingress -> ``twin.apply_many`` per patient -> effects.

The faust agents and the embedded runtime differ only in where records come from and where
state and effects go; they call ``Pipeline.handle`` with a micro-batch of records and a state
accessor, so the twin logic cannot diverge between them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.ingress import Accounting, DeadLetter, Ingress, SourceKind
from twin import TwinConfig, TwinState, VitalBatch, apply_many, readings
from twin.effects import Effect
from twin.errors import InvalidEvent
from twin.events import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """One input record as a runtime received it."""

    kind: SourceKind
    payload: bytes | dict[str, Any] | list[Any]
    received_at: datetime
    source: str
    position: str | None = None


# What a batch applies, in arrival order: events, and whole records of plain vital samples
# read by the columnar lane (``Ingress.decode_columnar``) without one object per sample.
Part = Event | VitalBatch


@dataclass(slots=True)
class Outcome:
    parts: list[Part] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    touched: dict[str, TwinState] = field(default_factory=dict)  # patient -> new state
    # The batch's forecasts (``models.fastpath.PatientForecast``), added by the runtime's
    # forecast stage before the sinks see the outcome; empty without a forecaster.
    forecasts: list[Any] = field(default_factory=list)

    @property
    def n_events(self) -> int:
        """Input events applied (a batch counts its samples)."""
        return sum(len(p) if isinstance(p, VitalBatch) else 1 for p in self.parts)

    def readings(self) -> list[tuple[str, str, int, float]]:
        """(patient, signal, t_ms, value) of every scorable sample and lab: what vitals sinks
        store, in arrival order (last write wins for a repeated key)."""
        return readings(self.parts)


class Pipeline:
    def __init__(self, ingress: Ingress, config: TwinConfig | None = None) -> None:
        self.ingress = ingress
        self.config = config or TwinConfig()
        self.accounting = Accounting()

    def decode(self, records: Iterable[Record]) -> tuple[list[Part], list[DeadLetter]]:
        parts: list[Part] = []
        dead: list[DeadLetter] = []
        for rec in records:
            res = self.ingress.decode_columnar(
                rec.kind,
                rec.payload,
                received_at=rec.received_at,
                source=rec.source,
                position=rec.position,
            )
            self.accounting.add(res)
            parts.extend(res.batches or res.events)
            dead.extend(res.dead)
        return parts, dead

    def fold(
        self, parts: list[Part], states: MutableMapping[str, TwinState]
    ) -> tuple[list[Effect], dict[str, TwinState]]:
        """Apply events patient by patient (arrival order kept within each patient)."""
        by_patient: dict[str, list[Part]] = {}
        for part in parts:
            by_patient.setdefault(part.patient_id, []).append(part)
        effects: list[Effect] = []
        touched: dict[str, TwinState] = {}
        for pid, evs in by_patient.items():
            try:
                new, fx = apply_many(states.get(pid), evs, self.config)
            except InvalidEvent:  # pragma: no cover - grouping by patient rules out mismatches
                log.exception("twin refused a batch")
                raise
            assert new is not None
            states[pid] = new
            touched[pid] = new
            effects.extend(fx)
        return effects, touched

    def handle(self, records: Iterable[Record], states: MutableMapping[str, TwinState]) -> Outcome:
        parts, dead = self.decode(records)
        effects, touched = self.fold(parts, states)
        return Outcome(parts=parts, effects=effects, dead=dead, touched=touched)
