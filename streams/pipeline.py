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
from twin import TwinConfig, TwinState, apply_many
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


@dataclass(slots=True)
class Outcome:
    events: list[Event] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    touched: dict[str, TwinState] = field(default_factory=dict)  # patient -> new state
    # The batch's forecasts (``models.fastpath.PatientForecast``), added by the runtime's
    # forecast stage before the sinks see the outcome; empty without a forecaster.
    forecasts: list[Any] = field(default_factory=list)


class Pipeline:
    def __init__(self, ingress: Ingress, config: TwinConfig | None = None) -> None:
        self.ingress = ingress
        self.config = config or TwinConfig()
        self.accounting = Accounting()

    def decode(self, records: Iterable[Record]) -> tuple[list[Event], list[DeadLetter]]:
        events: list[Event] = []
        dead: list[DeadLetter] = []
        for rec in records:
            res = self.ingress.decode(
                rec.kind,
                rec.payload,
                received_at=rec.received_at,
                source=rec.source,
                position=rec.position,
            )
            self.accounting.add(res)
            events.extend(res.events)
            dead.extend(res.dead)
        return events, dead

    def fold(
        self, events: list[Event], states: MutableMapping[str, TwinState]
    ) -> tuple[list[Effect], dict[str, TwinState]]:
        """Apply events patient by patient (arrival order kept within each patient)."""
        by_patient: dict[str, list[Event]] = {}
        for ev in events:
            by_patient.setdefault(ev.patient_id, []).append(ev)
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
        events, dead = self.decode(records)
        effects, touched = self.fold(events, states)
        return Outcome(events=events, effects=effects, dead=dead, touched=touched)
