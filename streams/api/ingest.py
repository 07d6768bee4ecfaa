"""Ingestion over HTTP: POSTed wearable samples and FHIR resources take the runtime's own path.

Every body goes through ``streams.ingress.Ingress.decode`` - the same decoding, pseudonymisation,
validation and dead-lettering as a file or a Kafka record - and the receipt lists each rejected
item's dead-letter id and reason. Three ingestors, one per way the API can run:

- ``StoreIngestor`` (``vitaltwin serve`` over an embedded store): applies the events to the
  twins and commits them, with the dead letters and the accounting, in one store transaction
  before answering. The API process must then be the store's only writer: an embedded runtime
  keeps its twins in memory and would overwrite what the API committed.
- ``RuntimeInbox`` (``vitaltwin demo``, the API next to a running embedded runtime): validates,
  answers, and queues the records; the runtime takes them with ``drain()`` into its next batch
  (so the one writer stays the runtime) and dead-letters the rejected items itself, under the
  same deterministic dead-letter ids the receipt gave.
- ``KafkaIngestor``: validates, sends the accepted records through ``EdgeProducer`` (keyed by
  patient token, pseudonymised) and the rejected items to the dead-letter topic.

Dead-letter ids depend on the source (``api:wearable`` / ``api:fhir``), the item's index in
the request and its bytes, so posting the same bad body twice gives one dead letter.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from streams import metrics
from streams.api.models import DeadLetterOut, IngestReceipt
from streams.ingress import Ingress, IngressResult, SourceKind
from streams.pipeline import Outcome, Pipeline, Record
from streams.sqlite_store import SqliteStore
from twin import readings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def source_name(kind: SourceKind) -> str:
    return f"api:{kind.value}"


class Ingestor(Protocol):
    def ingest(self, kind: SourceKind, body: bytes) -> IngestReceipt: ...

    def close(self) -> None: ...


def receipt(result: IngressResult, *, applied: bool) -> IngestReceipt:
    return IngestReceipt(
        received=result.items,
        accepted=result.items - len(result.dead),
        dead_lettered=[
            DeadLetterOut(dead_letter_id=d.dead_letter_id, reason=d.reason, detail=d.detail[:500])
            for d in result.dead
        ],
        applied=applied,
    )


class StoreIngestor:
    """Decode, apply and commit synchronously into an embedded store (single writer)."""

    def __init__(self, store: SqliteStore, pipeline: Pipeline, clock: Clock) -> None:
        self.store = store
        self.pipeline = pipeline
        self.clock = clock
        self._lock = threading.Lock()
        self.on_commit: list[Callable[[Any, dict[str, Any]], None]] = []

    def ingest(self, kind: SourceKind, body: bytes) -> IngestReceipt:
        started = time.monotonic()
        record = Record(kind, body, self.clock(), source=source_name(kind))
        with self._lock:
            # Start from the store's accounting and twins, not from what this process saw last:
            # ``vitaltwin ingest`` may have committed in between.
            self.pipeline.accounting = self.store.accounting()
            before = self.pipeline.accounting.received
            events, dead = self.pipeline.decode([record])
            items = self.pipeline.accounting.received - before
            states = {
                pid: st
                for pid in {e.patient_id for e in events}
                if (st := self.store.state(pid)) is not None
            }
            effects, touched = self.pipeline.fold(events, states)
            self.store.commit_batch(
                states=touched,
                readings=readings(events),
                effects=effects,
                dead=dead,
                positions={},
                accounting=self.pipeline.accounting,
            )
        result = IngressResult(events=events, dead=dead, items=items)
        outcome = Outcome(parts=list(events), effects=effects, dead=dead, touched=touched)
        metrics.observe_batch(outcome, time.monotonic() - started, topic=source_name(kind))
        metrics.observe_event_to_effect(time.monotonic() - started)
        for hook in self.on_commit:
            hook(outcome, touched)
        return receipt(result, applied=True)

    def close(self) -> None:
        """The store belongs to whoever opened it."""


class RuntimeInbox:
    """Validate now, apply in the embedded runtime's next batch (see the module docstring)."""

    def __init__(self, ingress: Ingress, clock: Clock, *, max_queued: int = 10_000) -> None:
        self.ingress = ingress
        self.clock = clock
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._queue: list[Record] = []

    def ingest(self, kind: SourceKind, body: bytes) -> IngestReceipt:
        record = Record(kind, body, self.clock(), source=source_name(kind))
        # A dry run of the decode the runtime will repeat: ids are deterministic, pseudonyms
        # are stable, so both agree on every event and dead letter.
        result = self.ingress.decode(
            kind, body, received_at=record.received_at, source=record.source
        )
        with self._lock:
            if len(self._queue) >= self.max_queued:
                from streams.api.errors import ApiError

                raise ApiError(
                    503,
                    "unavailable",
                    "ingestion queue is full; retry later",
                    headers={"Retry-After": "1"},
                )
            self._queue.append(record)
        return receipt(result, applied=False)

    def drain(self) -> list[Record]:
        """The queued records, oldest first, handed over once (call from the runtime thread)."""
        with self._lock:
            taken, self._queue = self._queue, []
        return taken

    def close(self) -> None:
        """Nothing to release; undrained records were never acknowledged as applied."""


class KafkaIngestor:
    """Validate, then send accepted records to the input topics and rejects to dead-letter."""

    def __init__(self, producer: Any, ingress: Ingress, clock: Clock) -> None:
        self.producer = producer  # streams.kafka_producer.EdgeProducer
        self.ingress = ingress
        self.clock = clock

    def ingest(self, kind: SourceKind, body: bytes) -> IngestReceipt:
        from streams.kafka_batch import dead_letter_bytes

        received_at = self.clock()
        result = self.ingress.decode(kind, body, received_at=received_at, source=source_name(kind))
        for item in accepted_items(kind, body, result):
            # One Kafka record per accepted item: samples of several patients in one body must
            # go to several keys (partitions). The producer pseudonymises again (a token maps to
            # itself) and keys the record by its patient token.
            self.producer.send(kind, item, received_at)
        topic = self.producer.settings.topics.dead_letter
        for dl in result.dead:
            self.producer.producer.send(topic, key=None, value=dead_letter_bytes(dl))
        self.producer.flush()
        return receipt(result, applied=False)

    def close(self) -> None:
        self.producer.close()


def accepted_items(kind: SourceKind, body: bytes, result: IngressResult) -> list[Any]:
    """The decoded items of a body that the ingress accepted (rejected ones left out)."""
    if result.items == len(result.dead):
        return []
    decoded = json.loads(body)  # decodable: something was accepted
    if kind is SourceKind.FHIR:
        return [decoded]
    if isinstance(decoded, dict) and isinstance(decoded.get("samples"), list):
        samples = decoded["samples"]
    elif isinstance(decoded, list):
        samples = decoded
    else:
        return [decoded]
    # The ingress names item i of a multi-sample body by position "#i" (see Ingress._wearable).
    rejected = {dl.position for dl in result.dead}
    return [s for i, s in enumerate(samples) if f"#{i}" not in rejected]
