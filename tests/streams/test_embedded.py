"""The embedded runtime end to end: ingest, pseudonymise, apply, store, dead-letter, resume."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.embedded import EmbeddedRuntime
from streams.ingress import Ingress
from streams.pipeline import Pipeline
from streams.pseudonym import Pseudonymiser, PseudonymStore
from streams.sources import JsonLinesSource
from streams.sqlite_store import SqliteStore
from twin import TwinState, apply_many
from twin.signals import Signal

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
NOW = datetime(2026, 1, 6, tzinfo=UTC)
MRN = "MRN-0042-SECRET"
SERIAL = "SN-998877"


def sample(minute: int, code: str, value: float, unit: str) -> dict[str, object]:
    return {
        "patient_id": MRN,
        "device_id": SERIAL,
        "observed_at": (T0 + timedelta(minutes=minute)).isoformat(),
        "code": code,
        "value": value,
        "unit": unit,
        "source": "watch",
    }


def write_stream(path: Path, minutes: int = 120) -> list[str]:
    lines = []
    for m in range(minutes):
        lines.append(json.dumps(sample(m, "8867-4", 70 + m % 20, "/min")))
        lines.append(
            json.dumps(
                {"samples": [sample(m, "59408-5", 96, "%"), sample(m, "9279-1", 16, "/min")]}
            )
        )
    lines.insert(10, "{not json")
    lines.insert(20, json.dumps(sample(3, "0000-0", 1, "/min")))  # unknown code
    lines.insert(30, json.dumps(sample(4, "8310-5", 37, "F")))  # unknown unit
    lines.insert(
        40,
        json.dumps(
            {
                "resourceType": "Observation",
                "id": "lac-1",
                "status": "final",
                "category": [{"coding": [{"code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "2524-7"}]},
                "subject": {"reference": f"Patient/{MRN}", "display": "Jane Doe"},
                "effectiveDateTime": (T0 + timedelta(minutes=5)).isoformat(),
                "valueQuantity": {
                    "value": 3.1,
                    "unit": "mmol/L",
                    "system": "http://unitsofmeasure.org",
                    "code": "mmol/L",
                },
            }
        ),
    )
    path.write_text("\n".join(lines) + "\n")
    return lines


def make_runtime(
    tmp: Path, source_path: Path
) -> tuple[EmbeddedRuntime, SqliteStore, PseudonymStore]:
    store = SqliteStore(tmp / "vitaltwin.db")
    pseudonyms = PseudonymStore(tmp / "pseudonyms.db")
    pipeline = Pipeline(Ingress(Pseudonymiser(pseudonyms)))
    runtime = EmbeddedRuntime(
        pipeline, store, JsonLinesSource(source_path, lambda: NOW), batch_size=50
    )
    return runtime, store, pseudonyms


def test_ingest_applies_dead_letters_and_accounting_closes(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    write_stream(src)
    runtime, store, pseudonyms = make_runtime(tmp_path, src)
    runtime.run()
    acc = store.accounting()
    # 120 HR lines + 120 batch lines of 2 samples + 4 extra records
    assert acc.received == 120 + 240 + 4
    assert acc.dead_lettered == 3
    assert acc.processed + acc.dead_lettered == acc.received
    assert acc.by_reason == {"malformed": 1, "unknown_code": 1, "unknown_unit": 1}
    reasons = sorted(d.reason for d in store.dead_letters())
    assert reasons == ["malformed", "unknown_code", "unknown_unit"]
    malformed = next(d for d in store.dead_letters() if d.reason == "malformed")
    assert malformed.payload == b"{not json"  # the original bytes, kept
    token = pseudonyms.token_for("patient", MRN)
    state = store.state(token)
    assert state is not None
    assert state.latest_value(Signal.HEART_RATE) == 70 + 119 % 20
    assert store.count("vitals") > 300


def test_no_identifier_reaches_the_store(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    write_stream(src, minutes=30)
    runtime, store, pseudonyms = make_runtime(tmp_path, src)
    runtime.run()
    store.close()
    dump = "\n".join(sqlite3.connect(tmp_path / "vitaltwin.db").iterdump())
    for secret in (MRN, SERIAL, "Jane Doe"):
        assert secret not in dump
    assert pseudonyms.identifier_for("patient", pseudonyms.token_for("patient", MRN)) == MRN


def test_state_equals_offline_replay_and_restart_resumes_without_reapplying(
    tmp_path: Path,
) -> None:
    src = tmp_path / "in.jsonl"
    write_stream(src)
    runtime, _, pseudonyms = make_runtime(tmp_path, src)
    runtime.run(max_records=150)  # stop part-way, as Ctrl-C would
    runtime2, store2, _ = make_runtime(tmp_path, src)
    runtime2.run()
    acc = store2.accounting()
    assert acc.received == 364  # nothing counted twice across the restart
    assert acc.processed + acc.dead_lettered == acc.received

    # Offline: decode the same file line by line, fold everything through twin.apply_many.
    ingress = Ingress(Pseudonymiser(pseudonyms))
    events = []
    for _, record in JsonLinesSource(src, lambda: NOW).records(None):
        events.extend(
            ingress.decode(record.kind, record.payload, received_at=NOW, source="offline").events
        )
    expected, _ = apply_many(None, events)
    token = pseudonyms.token_for("patient", MRN)
    got = store2.state(token)
    assert isinstance(got, TwinState)
    assert got == expected
    assert got.latest_value(Signal.LACTATE) == pytest.approx(3.1)


@pytest.mark.parametrize("batch_size", [1, 7, 5000])
def test_batch_size_does_not_change_the_result(tmp_path: Path, batch_size: int) -> None:
    src = tmp_path / "in.jsonl"
    write_stream(src, minutes=40)
    store = SqliteStore(tmp_path / f"b{batch_size}.db")
    pseudonyms = PseudonymStore(tmp_path / "pseudonyms.db")
    runtime = EmbeddedRuntime(
        Pipeline(Ingress(Pseudonymiser(pseudonyms))),
        store,
        JsonLinesSource(src, lambda: NOW),
        batch_size=batch_size,
    )
    runtime.run()
    token = pseudonyms.token_for("patient", MRN)
    reference = SqliteStore(tmp_path / "ref.db")
    EmbeddedRuntime(
        Pipeline(Ingress(Pseudonymiser(pseudonyms))),
        reference,
        JsonLinesSource(src, lambda: NOW),
        batch_size=3,
    ).run()
    assert store.state(token) == reference.state(token)
