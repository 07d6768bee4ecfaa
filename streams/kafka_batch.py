"""The worker's micro-batch: Kafka records in, new twins and output records out, no faust calls.

``process_batch`` is what the faust agent (``streams.kafka_app``) runs on each batch, kept apart
so that it can be driven and tested without a broker; ``Entry`` is the table value it reads and
writes; the ``*_bytes`` functions are the output topics' record formats.

Exactly-once *state* under at-least-once delivery: each table value carries, next to the twin
state, the last input offset applied per topic-partition and a count of processed items. After a
crash faust replays everything since the last committed offset; records whose offset the stored
value has already seen are skipped, so nothing is applied or counted twice, whatever the
interleaving of changelog writes and offset commits. Effects and dead letters may be emitted
again on replay; their ids are deterministic, so idempotent sinks keep one copy.

Every input record must be keyed by the patient token (producers pseudonymise at the edge): the
key chooses the partition, and so the one worker that owns the patient's whole stream. A record
without a key, or whose content names another patient, is dead-lettered.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams import json_codec
from streams.forecasting import newest_due
from streams.ingress import DeadLetter, IngressResult, SourceKind, dead_letter
from streams.kafka_settings import KafkaSettings
from streams.metrics import observe_forecast_failure
from streams.pipeline import Outcome, Part, Pipeline
from twin import TwinState, apply_runs, minute_runs
from twin.alerting import (
    DEFAULT_POLICY,
    AlertBook,
    AlertCommand,
    AlertPolicy,
    Notification,
    apply_command,
    evaluate,
    new_book,
)
from twin.effects import effect_id
from twin.errors import Reason

log = logging.getLogger(__name__)

ENVELOPE_VERSION = 1


@dataclass(slots=True)
class Entry:
    """What the table holds per patient: the twin plus the replay guard."""

    state: TwinState | None = None
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> last offset
    items: int = 0  # input items processed into this twin (for accounting)
    alerts: AlertBook | None = None  # the patient's alert lifecycle, atomic with the twin

    def to_bytes(self) -> bytes:
        return json_codec.dumps(
            {
                "v": ENVELOPE_VERSION,
                "state": None if self.state is None else self.state.to_dict(),
                "offsets": self.offsets,
                "items": self.items,
                "alerts": None if self.alerts is None else self.alerts.model_dump(mode="json"),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Entry:
        if not data:
            return cls()
        raw = json_codec.loads(data)
        state = None if raw["state"] is None else TwinState.from_dict(raw["state"])
        book = raw.get("alerts")
        alerts = None if book is None else AlertBook.from_bytes(json.dumps(book).encode())
        return cls(state, dict(raw["offsets"]), int(raw["items"]), alerts)


def dead_letter_bytes(dl: DeadLetter) -> bytes:
    body = dl.to_dict()
    body["v"] = ENVELOPE_VERSION
    body["payload_b64"] = base64.b64encode(dl.payload).decode("ascii")
    del body["payload"]
    return json.dumps(body, separators=(",", ":")).encode()


def notification_bytes(note: Notification) -> bytes:
    return json.dumps(
        {"v": ENVELOPE_VERSION, **note.model_dump(mode="json")}, separators=(",", ":")
    ).encode()


def effect_bytes(effect: Any) -> bytes:
    return json_codec.dumps({"v": ENVELOPE_VERSION, **effect.to_dict()})


@dataclass(slots=True)
class BatchResult:
    states: dict[str, Entry]
    effects: list[tuple[str, bytes]]  # (key, value)
    dead: list[tuple[str | None, bytes]]
    last_event_of: dict[str, Any]  # patient -> the faust event whose partition owns it
    alerts: list[tuple[str, bytes]] = field(default_factory=list)  # notifications out
    outcome: Outcome = field(default_factory=Outcome)  # the batch as objects, for the sinks


def forecast_bytes(fc: Any) -> bytes:
    """A forecast on the effects topic: ``kind`` "forecast", a deterministic id (patient and
    slot: a replay re-sends the same id) and the forecaster's record (see the API's reader)."""
    body = {"v": ENVELOPE_VERSION, "effect_id": effect_id("forecast", fc.patient_id, fc.at_ms)}
    body.update(fc.to_dict())
    return json.dumps(body, separators=(",", ":")).encode()


# Forecasts per forecaster call: bounds the latency one batch adds (64 take ~10-35 ms on a core).
FORECAST_CHUNK = 256

ForecastFn = Callable[[list[TwinState], list[int]], list[Any]]


def process_batch(
    pipeline: Pipeline,
    settings: KafkaSettings,
    events: list[Any],
    load: Callable[[str], Entry],
    policy: AlertPolicy = DEFAULT_POLICY,
    forecast: ForecastFn | None = None,
) -> BatchResult:
    """Pure-ish core of the agent (no faust calls): testable without a broker.

    ``load(patient)`` returns that patient's entry; the entries it returns are updated in place.
    ``forecast(states, slots)`` (e.g. ``models.fastpath.Forecaster.forecast_states``) answers the
    batch's "forecast due" effects: the patients due are forecast together at the end of the
    batch, from their new states, and each forecast reaches the patient's alert rules before
    the state (with its alert book) is written, so a crash replays both or neither.
    """
    topics = settings.topics
    entries: dict[str, Entry] = {}
    per_patient: dict[str, list[Part]] = {}
    commands: dict[str, list[AlertCommand]] = {}
    dead_objects: list[DeadLetter] = []
    dead: list[tuple[str | None, bytes]] = []
    last_event_of: dict[str, Any] = {}
    for fev in events:
        msg = fev.message
        key = msg.key.decode() if isinstance(msg.key, bytes) else msg.key
        tp = f"{msg.topic}:{msg.partition}"
        position = f"{tp}:{msg.offset}"
        kind = SourceKind.WEARABLE if msg.topic == topics.wearable else SourceKind.FHIR
        received_at = datetime.fromtimestamp(msg.timestamp, tz=UTC)
        # round, not int: faust's float seconds (Kafka's ms / 1000) times 1000 may fall a hair
        # short of the Kafka timestamp, and int() would then lose a millisecond.
        received_ms = round(msg.timestamp * 1000)
        if key is not None:
            entry = entries.get(key)
            if entry is None:
                entry = entries[key] = load(key)
            if entry.offsets.get(tp, -1) >= msg.offset:
                continue  # replayed after a crash: this record is already in the twin
            entry.offsets[tp] = msg.offset
            last_event_of[key] = fev
        if msg.topic == topics.alert_commands:
            # A clinician's acknowledge/silence/annotate, routed to the patient's owner.
            try:
                cmd = AlertCommand.model_validate_json(msg.value)
            except ValueError as exc:
                dl = dead_letter(
                    Reason.SCHEMA_VIOLATION,
                    f"alert command: {exc}",
                    msg.topic,
                    SourceKind.FHIR,
                    msg.value,
                    received_ms,
                    position,
                )
                dead.append((key, dead_letter_bytes(dl)))
                continue
            if key is not None and cmd.patient_id == key:
                commands.setdefault(key, []).append(cmd)
            continue
        result = pipeline.ingress.decode_columnar(
            kind, msg.value, received_at=received_at, source=msg.topic, position=position
        )
        if (result.events or result.batches) and (key is None or result.patient_ids() != {key}):
            # The key routed this record to the owner of another patient (or to no owner):
            # applying it would corrupt a twin, so the whole record is one dead item.
            reason = Reason.MISSING_ELEMENT if key is None else Reason.PATIENT_MISMATCH
            detail = (
                "record has no key (patient token)"
                if key is None
                else "record key and content name different patients"
            )
            result = IngressResult(items=1)
            result.dead.append(
                dead_letter(reason, detail, msg.topic, kind, msg.value, received_ms, position)
            )
        pipeline.accounting.add(result)
        if key is not None:
            entries[key].items += result.items - len(result.dead)
            per_patient.setdefault(key, []).extend(result.batches or result.events)
        dead.extend((key, dead_letter_bytes(dl)) for dl in result.dead)
        dead_objects.extend(result.dead)
    effects: list[tuple[str, bytes]] = []
    alerts: list[tuple[str, bytes]] = []
    outcome = Outcome(dead=dead_objects)
    for key in last_event_of:
        entry = entries[key]
        book = entry.alerts
        for cmd in commands.get(key, []):
            book, _ = apply_command(book or new_book(key), cmd)
        # Apply a minute of event time at a time and evaluate the alert policy after each:
        # pending periods and repeats then follow event time, however the batch was cut.
        parts = per_patient.get(key, [])
        for state, fx in apply_runs(entry.state, minute_runs(parts), pipeline.config):
            effects.extend((key, effect_bytes(e)) for e in fx)
            outcome.effects.extend(fx)
            book, notes = evaluate(book, state, state.watermark_ms, policy)
            alerts.extend((key, notification_bytes(n)) for n in notes)
            entry.state = state
        outcome.parts.extend(parts)
        if entry.state is not None and commands.get(key) and not per_patient.get(key):
            # Only a clinician's command arrived: evaluate so its effect is announced now.
            book, notes = evaluate(book, entry.state, entry.state.watermark_ms, policy)
            alerts.extend((key, notification_bytes(n)) for n in notes)
        entry.alerts = book
    if forecast is not None:
        _forecast_due(entries, outcome, forecast, policy, effects, alerts)
    # Only patients with a record applied in this batch. After a crash, a batch may hold nothing
    # but replays (skipped above) for some patient: it has nothing new to store, and no event of
    # its own to pick the changelog partition from (the agent looked it up and crashed with a
    # KeyError; faust then acked the whole batch, so the other patients' records in it were lost).
    changed = {key: entries[key] for key in last_event_of}
    return BatchResult(changed, effects, dead, last_event_of, alerts, outcome)


def _forecast_due(
    entries: dict[str, Entry],
    outcome: Outcome,
    forecast: ForecastFn,
    policy: AlertPolicy,
    effects: list[tuple[str, bytes]],
    alerts: list[tuple[str, bytes]],
) -> None:
    """Forecast every patient the batch made due (once, at its newest slot)."""
    due = newest_due(outcome.effects)
    todo = [(key, st) for key in due if (st := entries[key].state) is not None]
    for a in range(0, len(todo), FORECAST_CHUNK):
        part = todo[a : a + FORECAST_CHUNK]
        try:
            results = forecast([st for _, st in part], [due[key] for key, _ in part])
        except Exception:
            # Forecasts are advisory; the twins, their effects and the rule-based alerts are
            # not. Raising here would fail the batch, and its replay would fail the same way:
            # a worker stuck on one bad forecast. Log (no patient ids), count, carry on.
            log.exception("forecaster failed on %d due twins; stored without forecasts", len(part))
            observe_forecast_failure(len(part))
            continue
        for fc in results:
            entry = entries[fc.patient_id]
            assert entry.state is not None
            effects.append((fc.patient_id, forecast_bytes(fc)))
            outcome.forecasts.append(fc)
            book, notes = evaluate(
                entry.alerts, entry.state, entry.state.watermark_ms, policy, fc.to_forecast_risk()
            )
            entry.alerts = book
            alerts.extend((fc.patient_id, notification_bytes(n)) for n in notes)
