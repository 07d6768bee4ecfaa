"""The columnar lane (``twin.batch`` + ``apply_samples``) against the per-sample path.

Properties (hypothesis):

- reading: a batch of plain samples is always read, and row ``i`` carries exactly the
  ``t_ms``, ``id_hash``, ``event_id``, signal, value and artifact reason of
  ``parse_event(samples[i])``; ``events()`` and ``readings()`` are what the events give;
- refusal: a sample with any oddity is either refused (None: the caller takes the per-sample
  path) or read exactly as ``parse_event`` reads it - never accepted where it is rejected;
- timestamps: the lane's timestamp parser agrees with pydantic's wherever it answers;
- fold: from an empty or a non-empty twin, batches (interleaved with other events) fold to
  the same state, byte for byte, and the same effects in the same order as ``apply_many`` over
  the equivalent events - with duplicates, out-of-order and late samples, artifacts, mixed
  units, across bin and minute boundaries, and with a dedup capacity small enough to evict.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

import twin.batch as batch_module
from twin import (
    InvalidEvent,
    Reason,
    TwinConfig,
    TwinState,
    VitalBatch,
    apply_many,
    apply_samples,
    parse_event,
    read_vital_samples,
)
from twin.events import (
    ConsciousnessAssessment,
    Event,
    LabResult,
    OxygenTarget,
    OxygenTherapy,
    VitalSample,
    to_ms,
)
from twin.signals import (
    LOINC_TO_SIGNAL,
    SIGNALS,
    UNIT_ALIASES,
    UNIT_CONVERSIONS,
    Signal,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
RECEIVED = T0 + timedelta(hours=1)
PATIENT = "pt-lane"
SPAN_S = 1800  # samples fall in half an hour: many minutes, bins and forecast slots
CONFIGS = [
    TwinConfig(lateness_s=120, bin_s=60, window_bins=12, forecast_every_s=300),
    TwinConfig(lateness_s=0, bin_s=300, window_bins=4, forecast_every_s=60),
    TwinConfig(lateness_s=600, bin_s=120, window_bins=8, forecast_every_s=900, dedup_capacity=8),
]
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Canonical value ranges that straddle the plausibility limits: artifacts happen.
RANGES = {
    Signal.HEART_RATE: (10, 320),
    Signal.RESPIRATORY_RATE: (1, 50),
    Signal.SPO2: (70, 104),
    Signal.TEMPERATURE: (24, 42),
    Signal.SYSTOLIC_BP: (30, 320),
    Signal.DIASTOLIC_BP: (10, 120),
    Signal.GLUCOSE: (15, 400),
    Signal.STEPS: (-5, 450),
    Signal.O2_FLOW: (0, 90),
    Signal.CONSCIOUSNESS: (0, 4),
}
VITAL_CODES = [c for c, s in LOINC_TO_SIGNAL.items() if SIGNALS[s].kind == "vital"]
# Temperature and glucose twice over: their units convert with offsets and molar masses.
CODE_CHOICES = [*VITAL_CODES, "8310-5", "8310-5", "99504-3", "105272-9"]
LAB_CODES = [c for c, s in LOINC_TO_SIGNAL.items() if SIGNALS[s].kind == "lab"]


def units_for(sig: Signal) -> list[tuple[str, float, float]]:
    """Every spelling ``to_canonical`` accepts for ``sig``, with its (scale, offset)."""
    table = UNIT_CONVERSIONS[sig]
    out = [(u, s, o) for u, (s, o) in table.items()]
    out += [(a, *table[u]) for a, u in UNIT_ALIASES.items() if u in table and a not in table]
    return out


ZONES = [timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-3), timedelta(hours=14)]


@st.composite
def stamps(draw: st.DrawFn, lo_s: int = 0, hi_s: int = SPAN_S) -> str:
    """A plain RFC 3339 timestamp: Z, +00:00 or another offset; 0, 1, 3 or 6 decimals."""
    at = T0 + timedelta(seconds=draw(st.integers(lo_s, hi_s)))
    digits = draw(st.sampled_from([0, 0, 0, 1, 3, 6]))
    if digits:
        unit = 10 ** (6 - digits)
        at += timedelta(microseconds=draw(st.integers(0, 10**digits - 1)) * unit)
    zone = draw(st.sampled_from(["Z", "+00:00", *ZONES[1:]]))
    if isinstance(zone, timedelta):
        local = at.astimezone(timezone(zone))
        suffix = local.isoformat()[-6:]
    else:
        local, suffix = at, zone
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{local.microsecond:06d}"[:digits]
    return text + suffix


@st.composite
def plain_samples(draw: st.DrawFn, patient: str = PATIENT) -> dict[str, Any]:
    """A vital sample dict the lane must read: valid, plain, in any accepted spelling."""
    code = draw(st.sampled_from(CODE_CHOICES))
    sig = LOINC_TO_SIGNAL[code]
    unit, scale, offset = draw(st.sampled_from(units_for(sig)))
    lo, hi = RANGES[sig]
    canonical = draw(st.floats(min_value=lo, max_value=hi, allow_nan=False))
    raw: float | int = (canonical - offset) / scale
    if draw(st.booleans()):
        raw = round(raw)  # many devices send integers
    sample: dict[str, Any] = {
        "patient_id": patient,
        "observed_at": draw(stamps()),
        "code": code,
        "value": raw,
        "unit": unit,
    }
    optional = {
        "device_id": st.sampled_from(["dev-a", "dev-b", "", None]),
        "source": st.sampled_from(["wearable", "cuff", "", "unknown"]),
        "quality": st.sampled_from(["good", "questionable", "artifact", None]),
        "event_id": st.sampled_from(["", "ev-given-1", "ev-given-2"]),
        "type": st.just("vital"),
        "signal": st.sampled_from([sig.value, None]),
        "received_at": st.just("ignored: the ingress sets its own"),
    }
    for key, values in optional.items():
        if draw(st.integers(0, 3)) == 0:
            sample[key] = draw(values)
    return sample


@st.composite
def plain_records(draw: st.DrawFn, patient: str = PATIENT) -> list[dict[str, Any]]:
    """A record's samples, with re-deliveries: some samples repeat within the record."""
    samples = draw(st.lists(plain_samples(patient), min_size=1, max_size=12))
    for i in draw(st.lists(st.integers(0, 11), max_size=4)):
        samples.insert(draw(st.integers(0, len(samples))), samples[i % len(samples)])
    return samples


def parsed(sample: dict[str, Any], received: datetime = RECEIVED) -> VitalSample:
    """What the per-sample path makes of a sample (``streams.ingress``'s preparation)."""
    prepared = dict(sample)
    prepared.setdefault("type", "vital")
    prepared["received_at"] = received
    event = parse_event(prepared)
    assert isinstance(event, VitalSample)
    return event


def row_of(ev: VitalSample) -> tuple[int, int, str, Signal, float, str | None]:
    return ev.t_ms, ev.id_hash, ev.event_id, ev.sig, ev.value, ev.artifact()


def read(samples: list[Any], received: datetime = RECEIVED) -> VitalBatch:
    batch = read_vital_samples(samples, received)
    assert batch is not None, "a plain record left the lane"
    return batch


# ---- reading --------------------------------------------------------------------------------


def test_the_lane_knows_every_field_and_limit_of_vital_sample() -> None:
    fields = VitalSample.model_fields
    assert set(fields) == batch_module._FIELDS

    def max_len(name: str) -> int:
        return next(m.max_length for m in fields[name].metadata if hasattr(m, "max_length"))

    assert max_len("patient_id") == max_len("device_id") == max_len("event_id")
    assert max_len("patient_id") == batch_module._ID_MAX
    assert max_len("source") == batch_module._SOURCE_MAX
    assert fields["source"].default == "unknown"
    assert VitalSample.model_config.get("str_strip_whitespace") is True  # why padding is refused


@SETTINGS
@given(plain_records(), st.sampled_from([RECEIVED, RECEIVED.astimezone(timezone(-ZONES[1]))]))
def test_plain_samples_are_read_exactly_as_parse_event_reads_them(
    samples: list[dict[str, Any]], received: datetime
) -> None:
    batch = read(samples, received)
    events = [parsed(s, received) for s in samples]
    assert batch.patient_id == PATIENT
    assert batch.rows == [row_of(ev) for ev in events]
    assert batch.events() == events
    assert batch.readings() == [
        (ev.patient_id, ev.sig.value, ev.t_ms, ev.value) for ev in events if ev.artifact() is None
    ]
    assert len(batch) == len(samples)
    part = batch.slice(1, 3)
    assert part.rows == batch.rows[1:3]
    assert part.events() == events[1:3]


def _oddities(sample: dict[str, Any]) -> list[tuple[str, Any]]:
    """(field, value) changes a producer might send, valid or not."""
    code = sample["code"]
    return [
        ("patient_id", " " + PATIENT),
        ("patient_id", ""),
        ("patient_id", "pt-lane\u00e9"),
        ("patient_id", "x" * 129),
        ("patient_id", 7),
        ("patient_id", None),
        ("observed_at", sample["observed_at"].replace("T", " ")),
        ("observed_at", sample["observed_at"][:19]),  # naive
        ("observed_at", sample["observed_at"][:10]),
        ("observed_at", sample["observed_at"].lower()),
        ("observed_at", "1989-12-31T23:59:59.999999Z"),
        ("observed_at", "2026-02-30T08:00:00Z"),
        ("observed_at", "2026-03-01T24:00:00Z"),
        ("observed_at", "2026-03-01T08:00:60Z"),
        ("observed_at", "2026-03-01T08:00:00.1234567Z"),
        ("observed_at", "2026-03-01T08:00:00+24:00"),
        ("observed_at", "2026-03-01T08:00:00-00:00"),
        ("observed_at", "2026-03-01T09:05:00.000001Z"),  # 1 us beyond the clock-skew bound
        ("observed_at", "2026-03-01T09:05:00Z"),  # exactly on it
        ("observed_at", 1772352000),
        ("observed_at", T0),
        ("code", " " + code),
        ("code", "0000-0"),
        ("code", LAB_CODES[0]),
        ("code", 8867),
        ("unit", "furlongs"),
        ("unit", " " + sample["unit"]),
        ("value", float("nan")),
        ("value", float("inf")),
        ("value", True),
        ("value", "80"),
        ("value", None),
        ("value", 2**60),
        ("value", -0.0),
        ("device_id", " dev"),
        ("device_id", 5),
        ("device_id", "d" * 129),
        ("source", None),
        ("source", "s" * 65),
        ("source", "s" * 64),
        ("quality", "bad"),
        ("quality", " good"),
        ("event_id", None),
        ("event_id", "   "),
        ("event_id", "e" * 129),
        ("type", "lab"),
        ("type", None),
        ("signal", "spo2" if LOINC_TO_SIGNAL[code] is not Signal.SPO2 else "heart_rate"),
        ("signal", 3),
        ("surprise", 1),
        ("samples", []),
    ]


@SETTINGS
@given(plain_records(), st.data())
def test_an_odd_sample_is_refused_or_read_as_parse_event_reads_it(
    samples: list[dict[str, Any]], data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(samples) - 1))
    field, value = data.draw(st.sampled_from(_oddities(samples[i])))
    odd = dict(samples[i])
    odd[field] = value
    samples = [*samples[:i], odd, *samples[i + 1 :]]
    batch = read_vital_samples(samples, RECEIVED)
    try:
        events = [parsed(s) for s in samples]
    except InvalidEvent:
        assert batch is None  # never accepted where the per-sample path rejects
        return
    if batch is not None:
        assert batch.rows == [row_of(ev) for ev in events]
        assert batch.events() == events


@SETTINGS
@given(plain_records(), st.sampled_from(["patient_id", "observed_at", "code", "value", "unit"]))
def test_a_sample_missing_a_required_field_is_refused(
    samples: list[dict[str, Any]], field: str
) -> None:
    samples[-1] = {k: v for k, v in samples[-1].items() if k != field}
    assert read_vital_samples(samples, RECEIVED) is None


def test_records_the_lane_does_not_take() -> None:
    sample = {"patient_id": PATIENT, "observed_at": "2026-03-01T08:00:00Z", "code": "8867-4"}
    sample |= {"value": 70, "unit": "/min"}
    other = sample | {"patient_id": "pt-other", "code": "59408-5", "unit": "%", "value": 97}
    assert read_vital_samples([], RECEIVED) is None
    assert read_vital_samples([sample, other], RECEIVED) is None  # two patients
    assert read_vital_samples([sample, [sample]], RECEIVED) is None
    assert read_vital_samples([sample], RECEIVED.replace(tzinfo=None)) is None
    assert read_vital_samples([sample], datetime(1989, 1, 1, tzinfo=UTC)) is None
    assert read_vital_samples([sample], RECEIVED) is not None


# ---- timestamps -----------------------------------------------------------------------------

_DATETIME = TypeAdapter(datetime)


@st.composite
def stamp_texts(draw: st.DrawFn) -> str:
    """Timestamp-shaped strings, mostly near the lane's grammar, often just outside it."""

    def two(lo: int, hi: int) -> str:
        return f"{draw(st.integers(lo, hi)):02d}"

    date = f"{draw(st.integers(0, 9999)):04d}-{two(0, 13)}-{two(0, 32)}"
    time = f"{two(0, 25)}:{two(0, 61)}:{two(0, 61)}"
    frac = draw(st.sampled_from(["", "." + "1" * draw(st.integers(1, 8)), ".000000", ".5"]))
    zone = draw(
        st.sampled_from(["Z", "+00:00", "-00:00", "z", "", "+0530"])
        | st.builds(
            lambda s, h, m: f"{s}{h:02d}:{m:02d}",
            st.sampled_from("+-"),
            st.integers(0, 25),
            st.integers(0, 61),
        )
    )
    sep = draw(st.sampled_from(["T", "T", "T", " ", "t"]))
    return f"{date}{sep}{time}{frac}{zone}"


@settings(max_examples=1000, deadline=None)
@given(stamp_texts())
def test_the_lane_reads_a_timestamp_as_pydantic_does_or_not_at_all(text: str) -> None:
    got = batch_module._instant(text)
    try:
        value = _DATETIME.validate_python(text)
        utc = value.astimezone(UTC) if value.utcoffset() is not None else None
    except (ValueError, OverflowError):
        utc = None
    if got is None:
        return
    assert utc is not None, f"the lane read {text!r}, which pydantic rejects"
    us, ms, iso = got
    assert (us, ms, iso) == (
        (utc - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
        to_ms(utc),
        utc.isoformat(),
    )


@given(stamps())
def test_plain_timestamps_are_always_read(text: str) -> None:
    assert batch_module._instant(text) is not None


# ---- the fold -------------------------------------------------------------------------------


@st.composite
def other_events(draw: st.DrawFn) -> Event:
    """Events that are not vital samples: they share twins with batches."""
    at = T0 + timedelta(seconds=draw(st.integers(0, SPAN_S)))
    kind = draw(st.sampled_from(["lab", "oxygen", "target", "acvpu"]))
    if kind == "lab":
        return LabResult(
            patient_id=PATIENT,
            observed_at=at,
            code="2524-7",
            value=draw(st.floats(0.5, 9)),
            unit="mmol/L",
        )
    if kind == "oxygen":
        return OxygenTherapy(patient_id=PATIENT, observed_at=at, on=draw(st.booleans()))
    if kind == "target":
        return OxygenTarget(
            patient_id=PATIENT, observed_at=at, spo2_scale=draw(st.sampled_from([1, 2]))
        )
    return ConsciousnessAssessment(
        patient_id=PATIENT, observed_at=at, level=draw(st.integers(0, 4))
    )


Arrival = list[dict[str, Any]] | Event  # a record's samples, or another event


@st.composite
def streams(draw: st.DrawFn) -> list[Arrival]:
    arrivals: list[Arrival] = draw(
        st.lists(plain_records() | other_events(), min_size=1, max_size=10)
    )
    # Re-delivery of whole records (at-least-once upstream).
    for i in draw(st.lists(st.integers(0, 9), max_size=2)):
        arrivals.append(arrivals[i % len(arrivals)])
    return arrivals


def as_events(arrivals: list[Arrival]) -> list[Event]:
    out: list[Event] = []
    for a in arrivals:
        out.extend([parsed(s) for s in a] if isinstance(a, list) else [a])
    return out


def as_parts(arrivals: list[Arrival]) -> list[Event | VitalBatch]:
    return [read(a) if isinstance(a, list) else a for a in arrivals]


@SETTINGS
@given(
    st.lists(plain_records() | other_events(), max_size=6),
    streams(),
    st.sampled_from(CONFIGS),
)
def test_batches_fold_exactly_as_the_events_they_stand_for(
    history: list[Arrival], arrivals: list[Arrival], config: TwinConfig
) -> None:
    start, _ = apply_many(None, as_events(history), config)
    expected, expected_fx = apply_many(start, as_events(arrivals), config)
    got, got_fx = apply_many(start, as_parts(arrivals), config)
    assert got == expected
    assert got_fx == expected_fx
    # Record by record, as a worker folds them: the same at every step.
    by_event = by_batch = start
    for arrival in arrivals:
        if isinstance(arrival, list):
            by_event, fx_e = apply_many(by_event, as_events([arrival]), config)
            by_batch, fx_b = apply_samples(by_batch, read(arrival), config)
        else:
            by_event, fx_e = apply_many(by_event, [arrival], config)
            by_batch, fx_b = apply_many(by_batch, [arrival], config)
        assert by_batch == by_event
        assert fx_b == fx_e
    if start is not None:
        assert start == apply_many(None, as_events(history), config)[0]  # never mutated


def test_a_batch_of_another_patient_is_refused_like_its_events() -> None:
    sample = {"patient_id": "pt-other", "observed_at": "2026-03-01T08:00:00Z", "code": "8867-4"}
    sample |= {"value": 70, "unit": "/min"}
    state = TwinState(PATIENT)
    with pytest.raises(InvalidEvent) as by_event:
        apply_many(state, [parsed(sample)])
    with pytest.raises(InvalidEvent) as by_batch:
        apply_samples(state, read([sample]))
    assert by_batch.value.reason is by_event.value.reason is Reason.PATIENT_MISMATCH
    assert str(by_batch.value) == str(by_event.value)


def test_an_empty_batch_changes_nothing() -> None:
    empty = read(
        [
            {
                "patient_id": PATIENT,
                "observed_at": "2026-03-01T08:00:00Z",
                "code": "8867-4",
                "value": 70,
                "unit": "/min",
            }
        ]
    ).slice(0, 0)
    assert apply_samples(None, empty) == (None, [])
    state = TwinState(PATIENT)
    again, fx = apply_samples(state, empty)
    assert again == state
    assert again is not state
    assert fx == []


def test_a_state_copy_carries_every_slot() -> None:
    state = TwinState(PATIENT)
    for i, name in enumerate(TwinState.__slots__):
        if name not in ("ring", "patient_id"):
            setattr(state, name, {i: i} if isinstance(getattr(state, name), dict) else i)
    copy = state.copy()
    for name in TwinState.__slots__:
        original, copied = getattr(state, name), getattr(copy, name)
        if name == "ring":
            assert original.tobytes() == copied.tobytes()
            assert original is not copied
        else:
            assert copied == original, name
