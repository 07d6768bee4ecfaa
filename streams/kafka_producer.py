"""The Kafka edge: pseudonymise records and send them keyed by patient token (kafka-python).

The producer is idempotent with acks=all (kafka-python 3's defaults, set explicitly so a
future default change cannot weaken them): a retried send is written once, in order per
partition. Each record's Kafka timestamp is its delivery time at the edge; workers use it as
``received_at``, so a replay decodes to exactly the same events.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kafka import KafkaProducer

from streams.ingress import SourceKind
from streams.kafka_settings import KafkaSettings
from streams.pseudonym import Pseudonymiser
from twin.events import to_ms

log = logging.getLogger(__name__)


def patient_of(kind: SourceKind, record: Any) -> str | None:
    """The patient a (pseudonymised) record belongs to, used as its Kafka key."""
    if kind is SourceKind.WEARABLE:
        samples = record.get("samples") if isinstance(record, dict) else record
        if isinstance(samples, list):
            ids = {s.get("patient_id") for s in samples if isinstance(s, dict)}
            return ids.pop() if len(ids) == 1 else None
        return record.get("patient_id") if isinstance(record, dict) else None
    if not isinstance(record, dict):
        return None
    if record.get("resourceType") == "Bundle":
        for entry in record.get("entry") or []:
            found = patient_of(kind, (entry or {}).get("resource"))
            if found:
                return found
        return None
    if record.get("resourceType") == "Patient":
        return record.get("id")
    for element in ("subject", "patient"):
        ref = (record.get(element) or {}).get("reference", "")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref[len("Patient/") :]
    return None


class EdgeProducer:
    def __init__(
        self,
        settings: KafkaSettings,
        pseudonymiser: Pseudonymiser,
        producer: KafkaProducer | None = None,
    ) -> None:
        self.settings = settings
        self.pseudonymiser = pseudonymiser
        self.producer = producer or KafkaProducer(
            bootstrap_servers=settings.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=10,
            batch_size=256 * 1024,
            compression_type=None,
            client_id="vitaltwin-edge",
        )
        self.sent = 0

    def send(self, kind: SourceKind, record: Any, delivered_at: datetime) -> None:
        """Pseudonymise and send one record. Undecodable bytes go as they are, unkeyed,
        so the worker dead-letters them with their original bytes."""
        topic = (
            self.settings.topics.wearable
            if kind is SourceKind.WEARABLE
            else self.settings.topics.ehr
        )
        decoded = record
        if isinstance(record, bytes):
            try:
                decoded = json.loads(record)
            except ValueError:
                self._send(topic, None, record, delivered_at)
                return
        clean = self._pseudonymise(kind, decoded)
        key = patient_of(kind, clean)
        value = json.dumps(clean, separators=(",", ":"), default=str).encode()
        self._send(topic, key, value, delivered_at)

    def _pseudonymise(self, kind: SourceKind, decoded: Any) -> Any:
        if kind is SourceKind.FHIR:
            return self.pseudonymiser.fhir(decoded) if isinstance(decoded, Mapping) else decoded
        if isinstance(decoded, dict) and isinstance(decoded.get("samples"), list):
            return {**decoded, "samples": [self._sample(s) for s in decoded["samples"]]}
        if isinstance(decoded, list):
            return [self._sample(s) for s in decoded]
        return self._sample(decoded)

    def _sample(self, sample: Any) -> Any:
        return self.pseudonymiser.sample(sample) if isinstance(sample, Mapping) else sample

    def _send(self, topic: str, key: str | None, value: bytes, delivered_at: datetime) -> None:
        self.producer.send(
            topic,
            key=None if key is None else key.encode(),
            value=value,
            timestamp_ms=to_ms(delivered_at),
        )
        self.sent += 1

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()
