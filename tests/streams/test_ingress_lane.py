"""``Ingress.decode_columnar`` against ``Ingress.decode``, and the fold of what each returns.

Properties (hypothesis), over records in every shape the wearable topic carries - a batch, a
JSON list or one sample, as bytes or as a decoded object, with and without pseudonymisation -
whose samples are plain or odd in any field:

- decode: the same items and dead letters (ids, reasons, payloads), and the same events: a
  record the lane takes has no dead letter under ``decode`` and its batch stands for exactly
  ``decode``'s events; any other record comes back exactly as ``decode`` returns it;
- plain records always take the lane (the fallback is not the common case);
- fold: a stream of records decoded either way and folded patient by patient gives the same
  twins and the same effects, in order.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.ingress import Accounting, Ingress, IngressResult, SourceKind
from streams.pseudonym import Pseudonymiser, PseudonymStore
from twin import TwinConfig, TwinState, VitalBatch, apply_many, minute_runs, readings
from twin.effects import Effect
from twin.events import Event, LabResult, VitalSample
from twin.signals import LOINC_TO_SIGNAL, SIGNALS, UNIT_ALIASES, UNIT_CONVERSIONS

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
RECEIVED = T0 + timedelta(hours=1)
SOURCE = "vt.wearable"
CONFIG = TwinConfig(lateness_s=120, bin_s=60, window_bins=12, forecast_every_s=300)
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PSEUDONYMISER = Pseudonymiser(PseudonymStore(":memory:"))
INGRESSES = [Ingress(), Ingress(PSEUDONYMISER), Ingress(max_record_bytes=600)]

VITAL_CODES = [c for c, s in LOINC_TO_SIGNAL.items() if SIGNALS[s].kind == "vital"]
RANGES = {
    "heart_rate": (10, 320),
    "respiratory_rate": (1, 50),
    "spo2": (70, 104),
    "temperature": (24, 42),
    "systolic_bp": (30, 320),
    "diastolic_bp": (10, 120),
    "glucose": (15, 400),
    "steps": (-5, 450),
    "o2_flow": (0, 90),
    "consciousness": (0, 4),
}


def units_for(code: str) -> list[tuple[str, float, float]]:
    table = UNIT_CONVERSIONS[LOINC_TO_SIGNAL[code]]
    out = [(u, s, o) for u, (s, o) in table.items()]
    out += [(a, *table[u]) for a, u in UNIT_ALIASES.items() if u in table and a not in table]
    return out


@st.composite
def stamps(draw: st.DrawFn) -> str:
    at = T0 + timedelta(seconds=draw(st.integers(0, 1800)))
    at += timedelta(microseconds=draw(st.sampled_from([0, 0, 0, 1, 500_000, 123_456])))
    zone = draw(st.sampled_from([timedelta(0), timedelta(hours=2), timedelta(hours=-7)]))
    text = at.astimezone(timezone(zone)).isoformat()
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


ODDITIES: list[tuple[str, Any]] = [
    ("patient_id", " pt-1 "),
    ("patient_id", "pt-2"),
    ("patient_id", ""),
    ("patient_id", None),
    ("observed_at", "2026-03-01T08:00:00"),
    ("observed_at", "2026-03-01 08:00:00Z"),
    ("observed_at", "1980-01-01T00:00:00Z"),
    ("observed_at", "2026-03-01T09:05:00.001Z"),
    ("observed_at", 1772352000),
    ("code", "2524-7"),  # a lab code
    ("code", "1234-5"),
    ("unit", "stone"),
    ("value", math.nan),
    ("value", math.inf),
    ("value", "97"),
    ("value", True),
    ("device_id", " dev"),
    ("device_id", 3),
    ("source", 4),
    ("quality", "poor"),
    ("event_id", 12),
    ("type", "lab"),
    ("type", "oxygen"),
    ("signal", "crp"),
    ("extra", "field"),
]


# Temperature and glucose twice over: their units convert with offsets and molar masses.
CODE_CHOICES = [*VITAL_CODES, "8310-5", "8310-5", "99504-3", "105272-9"]


@st.composite
def samples(draw: st.DrawFn, patient: str) -> dict[str, Any]:
    """A valid, plain sample of ``patient`` (before any oddity)."""
    code = draw(st.sampled_from(CODE_CHOICES))
    unit, scale, offset = draw(st.sampled_from(units_for(code)))
    lo, hi = RANGES[LOINC_TO_SIGNAL[code].value]
    raw: float = (draw(st.floats(lo, hi, allow_nan=False)) - offset) / scale
    sample: dict[str, Any] = {
        "patient_id": patient,
        "observed_at": draw(stamps()),
        "code": code,
        "value": round(raw) if draw(st.booleans()) else raw,
        "unit": unit,
    }
    if draw(st.booleans()):
        sample["device_id"] = draw(st.sampled_from(["dev-1", "SN-9", None]))
    if draw(st.integers(0, 3)) == 0:
        sample["quality"] = draw(st.sampled_from(["good", "artifact"]))
    if draw(st.integers(0, 4)) == 0:
        sample["source"] = "cuff"
    if draw(st.integers(0, 6)) == 0:
        sample["event_id"] = draw(st.sampled_from(["ev-1", "ev-2"]))
    return sample


@st.composite
def records(draw: st.DrawFn, plain: bool = False) -> tuple[Any, bool]:
    """(record, as bytes?): a batch, a JSON list or one sample, re-deliveries within.

    Unless ``plain``, half the records carry an oddity in a sample or two (or a sample that is
    not an object), which the lane must refuse or read exactly as the per-sample path does.
    """
    patient = draw(st.sampled_from(["pt-1", "pt-1", "MRN-7"]))  # MRN-7: pseudonymised
    items: list[Any] = draw(st.lists(samples(patient), min_size=1 if plain else 0, max_size=10))
    for i in draw(st.lists(st.integers(0, 9), max_size=3)):
        if items:
            items.append(items[i % len(items)])
    if not plain and items and draw(st.booleans()):
        for _ in range(draw(st.integers(1, 2))):
            i = draw(st.integers(0, len(items) - 1))
            if draw(st.integers(0, 10)) == 0:
                items[i] = draw(st.sampled_from([1, "sample", None, [1, 2]]))
            elif isinstance(items[i], dict):
                field, value = draw(st.sampled_from(ODDITIES))
                items[i] = {**items[i], field: value}
    shape = draw(
        st.sampled_from(["batch", "list", "one"] if plain else ["batch", "list", "one", "odd"])
    )
    record: Any
    if shape == "batch":
        record = {"samples": items}
    elif shape == "list":
        record = items
    elif shape == "one":
        record = items[0] if items else {}
    else:
        record = {"samples": items, "note": "ignored"}
    return record, draw(st.booleans())


RECEIVED_TIMES = st.sampled_from(
    [
        RECEIVED,
        RECEIVED + timedelta(microseconds=1),
        RECEIVED.astimezone(timezone(timedelta(hours=-5))),
    ]
)


def payload(record: Any, as_bytes: bool) -> Any:
    return json.dumps(record).encode() if as_bytes else record


def both(
    ingress: Ingress, record: Any, received: datetime, position: str
) -> tuple[IngressResult, IngressResult]:
    kw: dict[str, Any] = {"received_at": received, "source": SOURCE, "position": position}
    return (
        ingress.decode(SourceKind.WEARABLE, record, **kw),
        ingress.decode_columnar(SourceKind.WEARABLE, record, **kw),
    )


def assert_same_decode(old: IngressResult, new: IngressResult) -> None:
    assert new.items == old.items
    assert new.dead == old.dead
    if new.batches:
        assert len(new.batches) == 1
        assert new.events == []
        assert old.dead == []
        batch = new.batches[0]
        assert batch.events() == old.events
        assert batch.rows == [
            (e.t_ms, e.id_hash, e.event_id, e.sig, e.value, e.artifact()) for e in old.events
        ]
        assert new.patient_ids() == old.patient_ids()
    else:
        assert new.events == old.events


@SETTINGS
@given(records(), RECEIVED_TIMES, st.sampled_from(range(len(INGRESSES))))
def test_columnar_decode_is_decode(
    record: tuple[Any, bool], received: datetime, which: int
) -> None:
    old, new = both(INGRESSES[which], payload(*record), received, "t:0:42")
    assert_same_decode(old, new)


@SETTINGS
@given(records(plain=True), RECEIVED_TIMES)
def test_plain_records_take_the_lane(record: tuple[Any, bool], received: datetime) -> None:
    for ingress in INGRESSES[:2]:
        old, new = both(ingress, payload(*record), received, "t:0:7")
        assert len(new.batches) == 1
        assert_same_decode(old, new)


def test_what_never_takes_the_lane_is_decoded_as_before() -> None:
    ingress = Ingress(max_record_bytes=64)
    fhir = {"resourceType": "Observation", "status": "final"}
    sample = {"patient_id": "pt-1", "observed_at": "2026-03-01T08:00:00Z", "code": "8867-4"}
    sample |= {"value": 70, "unit": "/min"}
    cases: list[tuple[SourceKind, Any]] = [
        (SourceKind.FHIR, json.dumps(fhir).encode()),
        (SourceKind.FHIR, fhir),
        (SourceKind.WEARABLE, b"{not json"),
        (SourceKind.WEARABLE, b"\xff\xfe"),
        (SourceKind.WEARABLE, json.dumps({"samples": [sample] * 3}).encode()),  # oversized
        (SourceKind.WEARABLE, {"samples": []}),
        (SourceKind.WEARABLE, []),
        (SourceKind.WEARABLE, "a string"),
    ]
    for kind, raw in cases:
        kw: dict[str, Any] = {"received_at": RECEIVED, "source": SOURCE, "position": "p"}
        old = ingress.decode(kind, raw, **kw)
        new = ingress.decode_columnar(kind, raw, **kw)
        assert new.batches == []
        assert (new.events, new.dead, new.items) == (old.events, old.dead, old.items)


def test_a_naive_ingress_time_fails_alike() -> None:
    raw = {"patient_id": "pt-1", "observed_at": "2026-03-01T08:00:00Z", "code": "8867-4"}
    raw |= {"value": 70, "unit": "/min"}
    naive = RECEIVED.replace(tzinfo=None)
    with pytest.raises(TypeError):
        Ingress().decode(SourceKind.WEARABLE, raw, received_at=naive, source=SOURCE)
    with pytest.raises(TypeError):
        Ingress().decode_columnar(SourceKind.WEARABLE, raw, received_at=naive, source=SOURCE)


def test_the_caller_s_record_is_left_alone() -> None:
    raw = {"patient_id": "MRN-1", "observed_at": "2026-03-01T08:00:00Z", "code": "8867-4"}
    raw |= {"value": 70, "unit": "/min", "device_id": "SN-1"}
    record = {"samples": [raw]}
    before = json.dumps(record)
    res = Ingress(PSEUDONYMISER).decode_columnar(
        SourceKind.WEARABLE, record, received_at=RECEIVED, source=SOURCE
    )
    assert json.dumps(record) == before
    (batch,) = res.batches
    assert batch.patient_id.startswith("pt-")
    (event,) = batch.events()
    assert event.device_id is not None
    assert event.device_id.startswith("dev-")


def fold_by_patient(
    parts: list[Event | VitalBatch],
) -> tuple[dict[str, TwinState | None], list[Effect]]:
    """``Pipeline.fold``'s grouping: by patient, arrival order kept within each."""
    by_patient: dict[str, list[Event | VitalBatch]] = {}
    for part in parts:
        by_patient.setdefault(part.patient_id, []).append(part)
    states: dict[str, TwinState | None] = {}
    effects: list[Effect] = []
    for pid, group in by_patient.items():
        states[pid], fx = apply_many(None, group, CONFIG)
        effects.extend(fx)
    return states, effects


@SETTINGS
@given(
    st.lists(st.tuples(records(), RECEIVED_TIMES), min_size=1, max_size=12),
    st.sampled_from(range(len(INGRESSES))),
)
def test_decode_and_fold_give_the_same_twins_either_way(
    stream: list[tuple[tuple[Any, bool], datetime]], which: int
) -> None:
    ingress = INGRESSES[which]
    old_parts: list[Event | VitalBatch] = []
    new_parts: list[Event | VitalBatch] = []
    old_accounting, new_accounting = Accounting(), Accounting()
    for offset, (record, received) in enumerate(stream):
        old, new = both(ingress, payload(*record), received, f"t:0:{offset}")
        old_accounting.add(old)
        new_accounting.add(new)
        old_parts.extend(old.events)
        new_parts.extend(new.batches or new.events)
    assert new_accounting == old_accounting
    assert fold_by_patient(new_parts) == fold_by_patient(old_parts)


def _minutes(events: list[Event]) -> list[list[Event]]:
    """``streams.kafka_app._minutes`` as it cut events before the lane (the reference)."""
    chunks: list[list[Event]] = []
    minute = None
    for ev in events:
        m = ev.t_ms // 60_000
        if m != minute or not chunks:
            chunks.append([])
            minute = m
        chunks[-1].append(ev)
    return chunks


def materialised(parts: list[Event | VitalBatch]) -> list[Event]:
    out: list[Event] = []
    for part in parts:
        out.extend(part.events() if isinstance(part, VitalBatch) else [part])
    return out


@SETTINGS
@given(st.lists(st.tuples(records(), RECEIVED_TIMES), min_size=1, max_size=8))
def test_minute_runs_cut_where_the_worker_cuts_events(
    stream: list[tuple[tuple[Any, bool], datetime]],
) -> None:
    per_patient: dict[str, list[Event | VitalBatch]] = {}  # as process_batch groups them
    for offset, (record, received) in enumerate(stream):
        _, new = both(INGRESSES[0], payload(*record), received, f"t:0:{offset}")
        for part in new.batches or new.events:
            per_patient.setdefault(part.patient_id, []).append(part)
    for parts in per_patient.values():
        runs = minute_runs(parts)
        assert [materialised(run) for run in runs] == _minutes(materialised(parts))
        # Folding run by run is folding the whole.
        by_runs: TwinState | None = None
        run_fx: list[Effect] = []
        for run in runs:
            by_runs, fx = apply_many(by_runs, run, CONFIG)
            run_fx.extend(fx)
        assert (by_runs, run_fx) == apply_many(None, parts, CONFIG)


@SETTINGS
@given(st.lists(st.tuples(records(), RECEIVED_TIMES), min_size=1, max_size=8))
def test_readings_are_what_the_sinks_take_from_events(
    stream: list[tuple[tuple[Any, bool], datetime]],
) -> None:
    old_parts: list[Event] = []
    new_parts: list[Event | VitalBatch] = []
    for offset, (record, received) in enumerate(stream):
        old, new = both(INGRESSES[0], payload(*record), received, f"t:0:{offset}")
        old_parts.extend(old.events)
        new_parts.extend(new.batches or new.events)
    # streams.influx.outcome_lines and SqliteStore.commit_batch, on events
    expected = [
        (e.patient_id, e.sig.value, e.t_ms, float(e.value))
        for e in old_parts
        if (isinstance(e, VitalSample) and e.artifact() is None) or isinstance(e, LabResult)
    ]
    assert readings(new_parts) == expected
    assert readings(old_parts) == expected


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_timestamp_without_utc_equivalent_is_a_dead_letter_on_both_paths(stamp: str) -> None:
    raw = {"patient_id": "pt-1", "observed_at": stamp, "code": "8867-4", "value": 70}
    raw |= {"unit": "/min"}
    old, new = both(
        Ingress(), {"samples": [raw, raw | {"code": "59408-5", "unit": "%"}]}, RECEIVED, "p"
    )
    assert [dl.reason for dl in old.dead] == ["impossible_timestamp"] * 2
    assert_same_decode(old, new)
