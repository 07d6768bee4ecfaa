"""Columnar vital samples: a wearable record's plain samples as rows, without event objects.

A wearable record is usually a batch of plain vital samples. Validating each through pydantic
(``parse_event``) and folding the resulting objects cost ~45 us a sample, most of it per-object
overhead. ``read_vital_samples`` validates such a batch as a whole and returns a ``VitalBatch``:
the plain values the transition reads for each sample (event time, id hash, event id, signal,
canonical value, artifact reason). ``twin.apply_samples`` folds it exactly as ``apply_many``
folds the equivalent events; ``minute_runs`` cuts a patient's events and batches into the runs
of one minute the Kafka worker evaluates its alert policy after.

Exactness. ``read_vital_samples`` accepts only samples it can prove ``parse_event`` accepts, and
computes each value as ``VitalSample`` does: the unit table of ``twin.signals``, ``to_ms``,
``vital_artifact``, and the formulas of ``derive_event_id`` and ``id_hash`` (written out for
speed; the tests hold them equal). Whatever it cannot prove - an unknown field, a non-ASCII or
padded string, a timestamp outside plain RFC 3339, a value of another type, anything
``parse_event`` would reject - makes it return None for the whole batch, and the caller takes
the per-sample path, which owns rejection reasons. So the lane only ever sees records that the
per-sample path turns into events without a dead letter, and the property tests check, sample
by sample, that it reads them alike.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from twin.events import (
    EPOCH_FLOOR,
    MAX_CLOCK_SKEW,
    Event,
    LabResult,
    Quality,
    VitalSample,
    parse_event,
    to_ms,
    vital_artifact,
)
from twin.signals import LOINC_TO_SIGNAL, SIGNALS, UNIT_ALIASES, UNIT_CONVERSIONS, Signal

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_FLOOR_US = (EPOCH_FLOOR - _EPOCH) // _US
_SKEW_US = MAX_CLOCK_SKEW // _US

# Field limits of ``VitalSample`` (checked against its model fields by the tests).
_ID_MAX = 128  # patient_id, device_id, event_id
_SOURCE_MAX = 64
_FIELDS = frozenset(
    {
        "patient_id",
        "observed_at",
        "code",
        "value",
        "unit",
        "device_id",
        "source",
        "event_id",
        "quality",
        "type",
        "signal",
        "received_at",  # the ingress overwrites it with its own clock on either path
    }
)
_QUALITIES = frozenset(q.value for q in Quality)
# Hashers of ``derive_event_id`` and ``id_hash``, copied per sample (see the read loop).
_BLAKE2B_16 = hashlib.blake2b(digest_size=16)
_BLAKE2B_8 = hashlib.blake2b(digest_size=8)
# Ints beyond 2**53 do not all convert to float exactly; leave them to pydantic.
_INT_LIMIT = 1 << 53


def _vital_units() -> dict[str, tuple[Signal, dict[str, tuple[float, float]], float, float]]:
    """code -> (signal, unit -> (scale, offset), plausible min, plausible max).

    Units are spelled as ``to_canonical`` accepts them: UCUM or one of ``UNIT_ALIASES``.
    """
    table: dict[str, tuple[Signal, dict[str, tuple[float, float]], float, float]] = {}
    for code, sig in LOINC_TO_SIGNAL.items():
        spec = SIGNALS[sig]
        if spec.kind != "vital":
            continue
        units = dict(UNIT_CONVERSIONS[sig])
        for alias, unit in UNIT_ALIASES.items():
            if unit in UNIT_CONVERSIONS[sig] and alias not in units:
                units[alias] = UNIT_CONVERSIONS[sig][unit]
        table[code] = (sig, units, spec.plausible_min, spec.plausible_max)
    return table


_VITAL_UNITS = _vital_units()

# RFC 3339 with a 'T', up to microseconds and an explicit zone: what our producers send, and a
# form pydantic's parser reads to the same instant (tested against it). ASCII digits only.
_STAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,6}))?(?:(Z|\+00:00)|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH_DAY = _EPOCH.date().toordinal()


@lru_cache(maxsize=1024)
def _days(year: int, month: int, day: int) -> int | None:
    """Days from 1970-01-01 to a calendar date, or None if there is no such date."""
    try:
        return date(year, month, day).toordinal() - _EPOCH_DAY
    except ValueError:
        return None


@lru_cache(maxsize=8192)
def _instant(text: str) -> tuple[int, int, str] | None:
    """(epoch us, epoch ms, UTC isoformat) of a plain RFC 3339 timestamp, else None.

    Cached: a record's samples share a few timestamps, and so do patients in one minute.
    """
    if type(text) is not str:
        return None
    m = _STAMP.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, utc = m.groups()[:8]
    micro = int(frac.ljust(6, "0")) if frac else 0
    if utc is None:
        return _instant_with_offset(m, micro)
    # UTC, the common case, in integers: the same instant and text as the datetime route.
    days = _days(int(year), int(month), int(day))
    h, mi, sec = int(hour), int(minute), int(second)
    if days is None or h > 23 or mi > 59 or sec > 59:
        return None
    us = (((days * 24 + h) * 60 + mi) * 60 + sec) * 1_000_000 + micro
    iso = f"{text[:19]}.{micro:06d}+00:00" if micro else f"{text[:19]}+00:00"
    return us, us // 1000, iso


def _instant_with_offset(m: re.Match[str], micro: int) -> tuple[int, int, str] | None:
    """``_instant`` for a timestamp with a UTC offset other than +00:00: through datetime."""
    year, month, day, hour, minute, second, _, _, sign, off_h, off_m = m.groups()
    if int(off_h) > 23 or int(off_m) > 59:
        return None
    offset = (int(off_h) * 60 + int(off_m)) * (-1 if sign == "-" else 1)
    try:
        local = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            micro,
            tzinfo=timezone(timedelta(minutes=offset)),
        )
        # What ``twin.events._utc`` does to every timestamp.
        utc = local.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return (utc - _EPOCH) // _US, to_ms(utc), utc.isoformat()


def _plain_text(value: object, limit: int) -> bool:
    """A string pydantic keeps as it is: ASCII (no surrogates), unpadded, within ``limit``."""
    return type(value) is str and len(value) <= limit and value.isascii() and value.strip() == value


# One sample as the transition reads it:
# (t_ms, id_hash, event_id, signal, canonical value, artifact reason or None)
Row = tuple[int, int, str, Signal, float, str | None]


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 5x on this hot path
class VitalBatch:
    """One patient's vital samples in arrival order, as the plain rows the transition reads.

    ``rows[i]`` stands for the ``VitalSample`` that ``parse_event`` makes of ``samples[i]`` with
    ``received_at``: its ``t_ms``, ``id_hash``, ``event_id``, ``sig``, ``value`` and
    ``artifact()``. Treat it as read-only.
    """

    patient_id: str
    rows: list[Row]
    samples: list[Mapping[str, Any]]  # the validated inputs, for ``events``
    received_at: datetime

    def __len__(self) -> int:
        return len(self.rows)

    def slice(self, start: int, stop: int) -> VitalBatch:
        """Rows ``start:stop`` as a batch of their own."""
        return VitalBatch(
            self.patient_id, self.rows[start:stop], self.samples[start:stop], self.received_at
        )

    def events(self) -> list[VitalSample]:
        """The events the rows stand for, built through ``parse_event`` (the slow path).

        For consumers that need event objects; the vitals sinks need only ``readings``.
        """
        out: list[VitalSample] = []
        for sample in self.samples:
            event = parse_event({**sample, "type": "vital", "received_at": self.received_at})
            assert isinstance(event, VitalSample)  # read_vital_samples admits no other kind
            out.append(event)
        return out

    def readings(self) -> list[tuple[str, str, int, float]]:
        """(patient_id, signal name, t_ms, value) of every row that is not an artifact.

        What the vitals sinks write for each ``VitalSample`` whose ``artifact()`` is None.
        """
        pid = self.patient_id
        return [(pid, sig.value, t, v) for t, _, _, sig, v, reason in self.rows if reason is None]


def read_vital_samples(samples: Sequence[object], received_at: datetime) -> VitalBatch | None:
    """Validate a record's samples as one patient's plain vital samples, or return None.

    ``samples`` are the JSON-like sample mappings exactly as the per-sample path would hand
    them to ``parse_event`` (pseudonymised already, ``type`` possibly absent) and
    ``received_at`` the ingress time it would add. None means "not provably plain": the caller
    must take the per-sample path for the whole record. The mappings are kept, not copied.
    """
    if not samples:
        return None
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        return None
    received = received_at.astimezone(UTC)
    if received < EPOCH_FLOOR:
        return None
    latest_us = (received - _EPOCH) // _US + _SKEW_US
    first = samples[0]
    if type(first) is not dict:
        return None
    patient_id = first.get("patient_id")
    if not (_plain_text(patient_id, _ID_MAX) and patient_id):
        return None
    assert isinstance(patient_id, str)
    # Device ids and sources already found plain: a record holds a few of each.
    devices: set[str] = set()
    sources: set[str] = set()
    rows: list[Row] = []
    kept: list[Mapping[str, Any]] = []
    new_id_hasher = _BLAKE2B_16.copy
    new_hash_hasher = _BLAKE2B_8.copy
    from_bytes = int.from_bytes
    try:
        for sample in samples:
            if type(sample) is not dict or not sample.keys() <= _FIELDS:
                return None
            if sample.get("patient_id") != patient_id or sample.get("type", "vital") != "vital":
                return None
            code = sample["code"]
            sig, units, low, high = _VITAL_UNITS[code]
            scale, offset = units[sample["unit"]]
            named = sample.get("signal")
            if named is not None and not (type(named) is str and named == sig.value):
                return None
            raw = sample["value"]
            if type(raw) is float:
                if raw - raw != 0:  # inf or nan: to_canonical rejects them
                    return None
                value = raw * scale + offset
            elif type(raw) is int and -_INT_LIMIT < raw < _INT_LIMIT:
                value = float(raw) * scale + offset
            else:
                return None
            instant = _instant(sample["observed_at"])
            if instant is None or not _FLOOR_US <= instant[0] <= latest_us:
                return None
            device = sample.get("device_id")
            if device is not None and device not in devices:
                if not _plain_text(device, _ID_MAX):
                    return None
                devices.add(device)
            source = sample.get("source", "unknown")
            if source not in sources:
                if not _plain_text(source, _SOURCE_MAX):
                    return None
                sources.add(source)
            quality = sample.get("quality")
            if quality is not None and (type(quality) is not str or quality not in _QUALITIES):
                return None
            event_id = sample.get("event_id", "")
            if not event_id:
                if type(event_id) is not str:
                    return None
                # derive_event_id(source, patient_id, device, code, observed_at.isoformat()),
                # written out: the call and its generic join cost a third of the hashing.
                hasher = new_id_hasher()
                hasher.update(
                    f"{source}\x1f{patient_id}\x1f{device or ''}\x1f{code}\x1f{instant[2]}".encode()
                )
                event_id = "ev_" + hasher.hexdigest()
            elif not _plain_text(event_id, _ID_MAX):
                return None
            hasher = new_hash_hasher()  # id_hash(event_id), written out likewise
            hasher.update(event_id.encode())
            # The plausible range inline: the rule itself only for the rare reading outside it.
            if quality != "artifact" and low <= value <= high:
                reason = None
            else:
                reason = vital_artifact(sig, value, quality)
            rows.append(
                (
                    instant[1],
                    from_bytes(hasher.digest(), "little") >> 1,
                    event_id,
                    sig,
                    value,
                    reason,
                )
            )
            kept.append(sample)
    except (KeyError, TypeError):
        # A missing field, or an unhashable value where a code, unit or timestamp belongs.
        return None
    return VitalBatch(patient_id, rows, kept, received_at)


def minute_runs(parts: Iterable[Event | VitalBatch]) -> list[list[Event | VitalBatch]]:
    """Consecutive runs of events and batch rows within one minute of event time.

    Arrival order is kept; a batch is cut where its rows cross into another minute, and rows
    and events of one minute join one run across parts. Materialised, the runs are exactly
    the runs of single events the Kafka worker evaluates its alert policy after.
    """
    runs: list[list[Event | VitalBatch]] = []
    minute = None
    for part in parts:
        if not isinstance(part, VitalBatch):
            m = part.t_ms // 60_000
            if m != minute or not runs:
                runs.append([])
                minute = m
            runs[-1].append(part)
            continue
        start = 0
        for i, row in enumerate(part.rows):
            m = row[0] // 60_000
            if m != minute or not runs:
                if i > start:
                    runs[-1].append(part.slice(start, i))
                runs.append([])
                minute, start = m, i
        if len(part) > start:
            runs[-1].append(part.slice(start, len(part)))
    return runs


def readings(parts: Iterable[Event | VitalBatch]) -> list[tuple[str, str, int, float]]:
    """(patient_id, signal name, t_ms, value) of every scorable vital sample and lab result.

    In arrival order; what the vitals sinks (InfluxDB, SQLite) store for events, without
    building an event per sample for the batches among them.
    """
    out: list[tuple[str, str, int, float]] = []
    for part in parts:
        if isinstance(part, VitalBatch):
            out.extend(part.readings())
        elif (isinstance(part, VitalSample) and part.artifact() is None) or isinstance(
            part, LabResult
        ):
            out.append((part.patient_id, part.sig.value, part.t_ms, part.value))
    return out
