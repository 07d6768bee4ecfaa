"""Delivered records: what a consumer of the simulated stream receives, in delivery order.

A ``Record`` carries its delivery time and a JSON-ready payload: a wearable/CGM/cuff sample as
the dict ``twin.events.dump_event(VitalSample(...))`` produces, or an FHIR R4 resource. FHIR
records also carry the equivalent twin event (``event``) so in-process consumers need not parse
FHIR. ``duplicate`` marks a redelivered packet: ground truth for tests, invisible on a wire.

``PatientRecords`` indexes one patient of a simulated chunk by delivery time and renders only
the records asked for (building dicts is the expensive part of streaming).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from simulators.burden import member
from simulators.devices import Device
from simulators.ehr import EhrKind
from simulators.fhir import Row, birth_date, render, resource_id
from twin.events import Event, derive_event_id, parse_event
from twin.signals import SIGNAL_TO_LOINC, SIGNALS, Signal

if TYPE_CHECKING:
    from simulators.engine import ChunkResult

I64 = npt.NDArray[np.int64]
SOURCES: dict[Device, str] = {
    Device.WEARABLE: "sim-wearable",
    Device.CGM: "sim-cgm",
    Device.CUFF: "sim-cuff",
}
_EHR = -1  # source code of EHR rows in the delivery index


class RecordKind(StrEnum):
    SAMPLE = "sample"  # a device sample: payload is a twin VitalSample dict
    FHIR = "fhir"  # an EHR message: payload is an FHIR R4 resource


@dataclass(frozen=True, slots=True)
class Record:
    received_at: datetime
    patient_id: str
    kind: RecordKind
    payload: dict[str, Any]
    event: Event | None = None  # the twin event an FHIR record stands for
    duplicate: bool = False

    def to_event(self) -> Event | None:
        """The twin event (samples are parsed from their payload)."""
        if self.event is not None:
            return self.event
        return parse_event(self.payload) if self.kind is RecordKind.SAMPLE else None


@cache
def _stamp(start: datetime, minute: int) -> tuple[str, str]:
    """(JSON form, isoformat used in event ids) of the minute's observed_at."""
    t = start + timedelta(minutes=minute)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ"), t.isoformat()


class PatientRecords:
    """One patient's deliveries in a chunk, ordered by (received time, source, time)."""

    def __init__(self, chunk: ChunkResult, col: int) -> None:
        self._chunk = chunk
        self.col = col
        self.patient_id = chunk.config.patient_id(int(chunk.cohort.index[col]))
        keys_ms: list[I64] = []
        srcs: list[I64] = []
        idxs: list[I64] = []
        dups: list[npt.NDArray[np.bool_]] = []
        self._channels = list(chunk.channels.values())
        self._kcol: list[int] = []
        for s, ch in enumerate(self._channels):
            where, found = member(ch.cols, np.array([col]))
            k = int(where[0]) if bool(found[0]) else -1
            self._kcol.append(k)
            if k < 0:
                continue
            slots = np.nonzero(ch.sent[k])[0]
            minute = ch.times()[k, slots].astype(np.int64)
            keys_ms.append(minute * 60_000 + ch.delay_ms[k, slots])
            srcs.append(np.full(slots.shape, s, np.int64))
            idxs.append(slots.astype(np.int64))
            dups.append(np.zeros(slots.shape, bool))
            dk, ds = ch.dup_idx
            mine = dk == k
            d = ds[mine]
            keys_ms.append(ch.times()[k, d].astype(np.int64) * 60_000 + ch.dup_delay_ms[mine])
            srcs.append(np.full(d.shape, s, np.int64))
            idxs.append(d.astype(np.int64))
            dups.append(np.ones(d.shape, bool))
        ehr = chunk.ehr
        assert ehr is not None  # ChunkResult.records refuses chunks without signals
        lo, hi = np.searchsorted(ehr.row, [col, col + 1])
        self._ehr_lo = int(lo)
        keys_ms.append(ehr.received_ms[lo:hi])
        srcs.append(np.full(hi - lo, _EHR, np.int64))
        idxs.append(np.arange(lo, hi, dtype=np.int64))
        dups.append(np.zeros(hi - lo, bool))
        key = np.concatenate(keys_ms)
        src = np.concatenate(srcs)
        idx = np.concatenate(idxs)
        dup = np.concatenate(dups)
        order = np.lexsort((dup, idx, src, key))
        self.received_ms = key[order]
        self._src, self._idx, self._dup = src[order], idx[order], dup[order]
        self._enc_seq = np.cumsum(ehr.kind[lo:hi] == EhrKind.ADMIT) - 1

    @property
    def patient_index(self) -> int:
        return int(self._chunk.cohort.index[self.col])

    def __len__(self) -> int:
        return int(self.received_ms.shape[0])

    def between(self, after_ms: int, until_ms: int) -> list[Record]:
        """Records received in (after_ms, until_ms], ms after the start."""
        a = int(np.searchsorted(self.received_ms, after_ms, side="right"))
        b = int(np.searchsorted(self.received_ms, until_ms, side="right"))
        return [self.record(i) for i in range(a, b)]

    def record(self, i: int) -> Record:
        chunk = self._chunk
        start = chunk.config.start
        received = start + timedelta(milliseconds=int(self.received_ms[i]))
        src, idx, dup = int(self._src[i]), int(self._idx[i]), bool(self._dup[i])
        if src == _EHR:
            payload, event = self._ehr(idx)
            return Record(received, self.patient_id, RecordKind.FHIR, payload, event, dup)
        ch = self._channels[src]
        k = self._kcol[src]
        minute = int(ch.times()[k, idx])
        value = round(float(ch.value[k, idx]), 2)
        payload = sample_payload(
            start,
            self.patient_id,
            ch.signal,
            SOURCES[ch.device],
            f"{self.patient_id}/{ch.device.value}",
            minute,
            value,
            bool(ch.flagged[k, idx]),
        )
        return Record(received, self.patient_id, RecordKind.SAMPLE, payload, None, dup)

    def ehr_resource(self, i: int) -> tuple[dict[str, Any], Event | None]:
        """The FHIR resource and twin event of EHR row ``i`` of the chunk (this patient's)."""
        return self._ehr(i)

    def _ehr(self, i: int) -> tuple[dict[str, Any], Event | None]:
        chunk = self._chunk
        ehr = chunk.ehr
        assert ehr is not None
        start = chunk.config.start
        kind = EhrKind(int(ehr.kind[i]))
        seq = i - self._ehr_lo
        enc = max(int(self._enc_seq[seq]), 0)
        issued = ehr.issued_min[i]
        row = Row(
            patient_id=self.patient_id,
            kind=kind,
            code=int(ehr.code[i]),
            observed=start + timedelta(minutes=float(ehr.minute[i])),
            issued=None if np.isnan(issued) else start + timedelta(minutes=float(issued)),
            value=float(ehr.value[i]),
            resource_id=resource_id(
                self.patient_id, kind, enc if kind in (EhrKind.ADMIT, EhrKind.DISCHARGE) else seq
            ),
            encounter=f"{self.patient_id}-enc-{enc}",
            birth_date=birth_date(start, int(chunk.cohort.birth_days_before_start[self.col])),
            female=bool(chunk.cohort.female[self.col]),
        )
        return render(row)


def sample_payload(
    start: datetime,
    patient_id: str,
    signal: Signal,
    source: str,
    device_id: str,
    minute: int,
    value: float,
    flagged: bool,
) -> dict[str, Any]:
    """Exactly ``dump_event(VitalSample(...))`` for a canonical-unit sample, built directly."""
    code = SIGNAL_TO_LOINC[signal]
    observed, observed_iso = _stamp(start, minute)
    payload: dict[str, Any] = {
        "event_id": derive_event_id(source, device_id, code, observed_iso),
        "patient_id": patient_id,
        "observed_at": observed,
        "source": source,
        "code": code,
        "value": value,
        "unit": SIGNALS[signal].unit,
        "signal": signal.value,
        "type": "vital",
        "device_id": device_id,
    }
    if flagged:
        payload["quality"] = "artifact"
    return payload
