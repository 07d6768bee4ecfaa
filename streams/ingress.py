"""The edge every input passes: decode, pseudonymise, validate -> events or dead letters.

Items and accounting: a wearable record may carry one sample or a batch (``{"samples": [...]}``
or a JSON list), each sample an item; a FHIR record is one item (a Bundle is one item whose
events all enter or, if any entry is invalid, all go to the dead-letter store together, so a
half-applied Bundle never exists). A record that cannot be decoded at all is one item.
Every item ends up either processed or dead-lettered: ``processed + dead_lettered == received``.

Dead letters keep the payload as this stage saw it: pseudonymised when it could be decoded
(no identifier leaves the edge), the original bytes when it could not (then it may hold
identifiers, which is why the dead-letter store sits with the pseudonym store's protection).

The columnar lane (``decode_columnar``): a wearable record whose samples are all plain, valid
vital samples of one patient comes back as one ``twin.VitalBatch`` (``result.batches``) instead
of an event per sample, for ``twin.apply_samples``; any other record, or one the lane cannot
prove plain, goes whole through the per-sample path, so rejection reasons, dead-letter ids and
payloads are exactly those of ``decode``. Either way ``items`` and ``dead`` account alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from streams import json_codec
from streams.fhir import events_from_fhir
from streams.pseudonym import Pseudonymiser
from twin.batch import VitalBatch, read_vital_samples
from twin.errors import InvalidEvent, Reason
from twin.events import Event, parse_event, to_ms

MAX_RECORD_BYTES = 1 << 20


class SourceKind(StrEnum):
    WEARABLE = "wearable"
    FHIR = "fhir"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_letter_id: str  # deterministic: the same bad item re-delivered is one dead letter
    reason: str
    detail: str
    source: str  # where it came from: topic, file, API route
    kind: str
    payload: bytes
    received_at_ms: int
    position: str | None = None  # topic:partition:offset, file:line, ...

    def to_dict(self) -> dict[str, Any]:
        return {
            "dead_letter_id": self.dead_letter_id,
            "reason": self.reason,
            "detail": self.detail,
            "source": self.source,
            "kind": self.kind,
            "payload": self.payload.decode("utf-8", errors="replace"),
            "received_at_ms": self.received_at_ms,
            "position": self.position,
        }


@dataclass(slots=True)
class IngressResult:
    events: list[Event] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    items: int = 0
    # ``decode_columnar`` only: the record's samples as one batch, in place of ``events``
    batches: list[VitalBatch] = field(default_factory=list)

    def patient_ids(self) -> set[str]:
        """The patients the record's events and batches belong to."""
        return {e.patient_id for e in self.events} | {b.patient_id for b in self.batches}


@dataclass(slots=True)
class Accounting:
    received: int = 0
    processed: int = 0
    dead_lettered: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, result: IngressResult) -> None:
        self.received += result.items
        self.dead_lettered += len(result.dead)
        self.processed += result.items - len(result.dead)
        for dl in result.dead:
            self.by_reason[dl.reason] = self.by_reason.get(dl.reason, 0) + 1

    @property
    def closes(self) -> bool:
        return self.processed + self.dead_lettered == self.received


def dead_letter(
    reason: Reason,
    detail: str,
    source: str,
    kind: SourceKind,
    payload: bytes,
    received_at_ms: int,
    position: str | None,
) -> DeadLetter:
    """A dead letter whose id depends only on where the item came from and its bytes."""
    dl_id = (
        "dl_"
        + hashlib.blake2b(
            b"\x1f".join([source.encode(), (position or "").encode(), payload]), digest_size=16
        ).hexdigest()
    )
    return DeadLetter(
        dl_id, reason.value, detail, source, kind.value, payload, received_at_ms, position
    )


class Ingress:
    def __init__(
        self, pseudonymiser: Pseudonymiser | None = None, max_record_bytes: int = MAX_RECORD_BYTES
    ) -> None:
        self.pseudonymiser = pseudonymiser
        self.max_record_bytes = max_record_bytes

    def decode(
        self,
        kind: SourceKind,
        raw: bytes | Mapping[str, Any] | list[Any],
        *,
        received_at: datetime,
        source: str,
        position: str | None = None,
    ) -> IngressResult:
        """Turn one record into events; what cannot be turned goes to ``result.dead``."""
        result = IngressResult()
        received_ms = to_ms(received_at)

        def reject(reason: Reason | str, detail: str, payload: bytes, pos: str | None) -> None:
            reason_text = reason.value if isinstance(reason, Reason) else reason
            dl_id = (
                "dl_"
                + hashlib.blake2b(
                    b"\x1f".join([source.encode(), (pos or "").encode(), payload]), digest_size=16
                ).hexdigest()
            )
            result.dead.append(
                DeadLetter(
                    dl_id, reason_text, detail, source, kind.value, payload, received_ms, pos
                )
            )

        if isinstance(raw, bytes):
            if len(raw) > self.max_record_bytes:
                result.items = 1
                reject(
                    Reason.OVERSIZED, f"{len(raw)} bytes > {self.max_record_bytes}", raw, position
                )
                return result
            try:
                decoded: Any = json_codec.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                result.items = 1
                reject(Reason.MALFORMED, f"not JSON: {exc}", raw, position)
                return result
        else:
            decoded = raw

        if kind is SourceKind.WEARABLE:
            self._wearable(decoded, received_at, position, result, reject)
        else:
            self._fhir(decoded, received_at, position, result, reject)
        return result

    def decode_columnar(
        self,
        kind: SourceKind,
        raw: bytes | Mapping[str, Any] | list[Any],
        *,
        received_at: datetime,
        source: str,
        position: str | None = None,
    ) -> IngressResult:
        """Like ``decode``, but plain wearable samples come back as one ``VitalBatch``.

        When the lane takes the record, ``result.batches`` holds one batch, ``events`` and
        ``dead`` are empty and ``items`` is its number of samples, and ``batches[0].events()``
        are the events ``decode`` would have returned. Otherwise the result is ``decode``'s, on
        the document the lane already parsed (bytes it could not parse go to ``decode`` as they
        are, for their dead letter).
        """

        def fallback(record: Any) -> IngressResult:
            return self.decode(
                kind, record, received_at=received_at, source=source, position=position
            )

        oversized = isinstance(raw, bytes) and len(raw) > self.max_record_bytes
        if kind is not SourceKind.WEARABLE or oversized:
            return fallback(raw)
        doc: Any = raw
        if isinstance(raw, bytes):
            try:
                doc = json_codec.loads(raw)
            except (ValueError, UnicodeDecodeError):
                return fallback(raw)  # its dead letter carries the bytes
        batch = self._batch(doc, received_at)
        if batch is not None:
            return IngressResult(items=len(batch), batches=[batch])
        return fallback(doc)

    def _batch(self, decoded: Any, received_at: datetime) -> VitalBatch | None:
        """The lane: a parsed record's samples as ``decode`` would validate them, as one batch."""
        samples = _samples_of(decoded)
        if self.pseudonymiser is not None:
            if not all(isinstance(s, dict) for s in samples):
                return None
            # As in ``_wearable``, identifiers are replaced before validation. The pseudonymiser
            # sees no ``type`` key here; it rewrites identifiers only, so that cannot matter.
            samples = [self.pseudonymiser.sample(s) for s in samples]
        return read_vital_samples(samples, received_at)

    def _wearable(
        self,
        decoded: Any,
        received_at: datetime,
        position: str | None,
        result: IngressResult,
        reject: Any,
    ) -> None:
        samples = _samples_of(decoded)
        for i, sample in enumerate(samples):
            result.items += 1
            pos = position if len(samples) == 1 else f"{position or ''}#{i}"
            if not isinstance(sample, dict):
                reject(
                    Reason.SCHEMA_VIOLATION, "a sample must be a JSON object", _dump(sample), pos
                )
                continue
            sample = dict(sample)  # never mutate the caller's record
            sample.setdefault("type", "vital")
            if self.pseudonymiser is not None:
                sample = self.pseudonymiser.sample(sample)
            # Our clock at the edge, not the sender's: it bounds how far in the future an
            # observation may claim to be.
            sample["received_at"] = received_at
            try:
                result.events.append(parse_event(sample))
            except InvalidEvent as exc:
                reject(exc.reason, exc.detail, _dump(sample), pos)

    def _fhir(
        self,
        decoded: Any,
        received_at: datetime,
        position: str | None,
        result: IngressResult,
        reject: Any,
    ) -> None:
        result.items += 1
        if not isinstance(decoded, dict):
            reject(
                Reason.SCHEMA_VIOLATION,
                "a FHIR resource must be a JSON object",
                _dump(decoded),
                position,
            )
            return
        if self.pseudonymiser is not None:
            decoded = self.pseudonymiser.fhir(decoded)
        try:
            result.events.extend(events_from_fhir(decoded, received_at=received_at))
        except InvalidEvent as exc:
            reject(exc.reason, exc.detail, _dump(decoded), position)


def _samples_of(decoded: Any) -> list[Any]:
    """A wearable record's samples: ``{"samples": [...]}``, a JSON list, or one sample."""
    if isinstance(decoded, dict) and isinstance(decoded.get("samples"), list):
        samples: list[Any] = decoded["samples"]
        return samples
    if isinstance(decoded, list):
        return decoded
    return [decoded]


def _dump(value: Any) -> bytes:
    return json.dumps(value, default=str, separators=(",", ":")).encode()
