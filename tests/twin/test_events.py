"""Event schemas: parsing, unit normalisation, stable ids, precise rejection reasons."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from twin.errors import InvalidEvent, Reason
from twin.events import (
    ConsciousnessAssessment,
    LabResult,
    VitalSample,
    dump_event,
    parse_event,
    parse_event_json,
)
from twin.signals import Acvpu, Signal

T = "2026-01-05T10:00:00Z"


def vital(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "vital",
        "patient_id": "pt-1",
        "device_id": "watch-7",
        "source": "wearable",
        "observed_at": T,
        "code": "8867-4",
        "value": 72,
        "unit": "/min",
    }
    base.update(over)
    return base


def reason_of(payload: dict[str, object]) -> Reason:
    with pytest.raises(InvalidEvent) as info:
        parse_event(payload)
    return info.value.reason


def test_wearable_sample_parses_to_canonical_signal_and_utc() -> None:
    ev = parse_event(vital(observed_at="2026-01-05T11:00:00+01:00"))
    assert isinstance(ev, VitalSample)
    assert ev.sig is Signal.HEART_RATE
    assert ev.observed_at == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert ev.t_ms == 1767607200000


@pytest.mark.parametrize(
    ("code", "value", "unit", "expected", "canonical"),
    [
        ("8310-5", 98.6, "[degF]", 37.0, "Cel"),
        ("8310-5", 310.15, "K", 37.0, "Cel"),
        ("99504-3", 5.0, "mmol/L", 90.08, "mg/dL"),
        ("8867-4", 80, "bpm", 80.0, "/min"),
        ("8480-6", 120, "mmHg", 120.0, "mm[Hg]"),
        ("9279-1", 18, "{breaths}/min", 18.0, "/min"),
    ],
)
def test_units_are_normalised_with_the_table(
    code: str, value: float, unit: str, expected: float, canonical: str
) -> None:
    ev = parse_event(vital(code=code, value=value, unit=unit))
    assert isinstance(ev, VitalSample)
    assert ev.value == pytest.approx(expected, abs=1e-9)
    assert ev.unit == canonical


def test_lab_glucose_mmol_converted_and_issued_time_kept() -> None:
    ev = parse_event(
        {
            "type": "lab",
            "patient_id": "pt-1",
            "observed_at": T,
            "issued_at": "2026-01-05T11:30:00Z",
            "code": "15074-8",
            "value": 3.0,
            "unit": "mmol/L",
        }
    )
    assert isinstance(ev, LabResult)
    assert ev.sig is Signal.GLUCOSE_LAB
    assert ev.value == pytest.approx(54.048)
    assert ev.issued_at == datetime(2026, 1, 5, 11, 30, tzinfo=UTC)


def test_event_id_is_derived_deterministically_from_source_device_code_time() -> None:
    a = parse_event(vital(value=70))
    b = parse_event(vital(value=71))  # a re-delivery with a corrected value is the same sample
    c = parse_event(vital(device_id="watch-8"))
    assert a.event_id == b.event_id
    assert a.event_id != c.event_id
    assert a.event_id.startswith("ev_")
    given = parse_event(vital(event_id="abc-123"))
    assert given.event_id == "abc-123"


def test_same_instant_in_other_offset_gives_same_id() -> None:
    a = parse_event(vital(observed_at="2026-01-05T10:00:00Z"))
    b = parse_event(vital(observed_at="2026-01-05T05:00:00-05:00"))
    assert a.event_id == b.event_id


def test_dump_then_parse_round_trips() -> None:
    ev = parse_event(vital(code="8310-5", value=101.0, unit="[degF]"))
    again = parse_event(dump_event(ev))
    assert again == ev
    assert again.event_id == ev.event_id


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"observed_at": "2026-01-05T10:00:00"}, Reason.NAIVE_TIMESTAMP),
        ({"observed_at": "1985-01-05T10:00:00Z"}, Reason.IMPOSSIBLE_TIMESTAMP),
        ({"received_at": "2026-01-05T09:00:00Z"}, Reason.IMPOSSIBLE_TIMESTAMP),
        ({"code": "1234-5"}, Reason.UNKNOWN_CODE),
        ({"unit": "F", "code": "8310-5"}, Reason.UNKNOWN_UNIT),
        ({"unit": "beats per minute"}, Reason.UNKNOWN_UNIT),
        ({"value": float("nan")}, Reason.NON_FINITE_VALUE),
        ({"value": float("inf")}, Reason.NON_FINITE_VALUE),
        ({"patient_id": None}, Reason.SCHEMA_VIOLATION),
        ({"code": "2524-7", "unit": "mmol/L"}, Reason.UNKNOWN_CODE),  # a lab sent as a vital
        ({"surprise": 1}, Reason.SCHEMA_VIOLATION),
        ({"type": "telepathy"}, Reason.UNSUPPORTED_RESOURCE),
    ],
)
def test_rejections_carry_precise_reasons(over: dict[str, object], reason: Reason) -> None:
    assert reason_of(vital(**over)) is reason


def test_missing_required_element_is_reported_as_such() -> None:
    payload = vital()
    del payload["patient_id"]
    with pytest.raises(InvalidEvent) as info:
        parse_event(payload)
    assert info.value.reason is Reason.MISSING_ELEMENT
    assert "patient_id" in info.value.detail


def test_observed_slightly_after_received_is_clock_skew_not_error() -> None:
    ev = parse_event(vital(received_at="2026-01-05T09:57:00Z"))
    assert ev.received_at is not None


def test_malformed_json_bytes() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event_json(b'{"type": "vital", ')
    assert info.value.reason is Reason.MALFORMED


def test_consciousness_letters_and_impossible_birth_date() -> None:
    ev = parse_event({"type": "consciousness", "patient_id": "p", "observed_at": T, "level": "v"})
    assert isinstance(ev, ConsciousnessAssessment)
    assert ev.level is Acvpu.VOICE
    with pytest.raises(InvalidEvent) as info:
        parse_event(
            {
                "type": "demographics",
                "patient_id": "p",
                "observed_at": T,
                "birth_date": date(2030, 1, 1).isoformat(),
            }
        )
    assert info.value.reason is Reason.IMPOSSIBLE_TIMESTAMP


def test_impossible_reading_parses_but_is_flagged_as_artifact() -> None:
    over_100 = parse_event(vital(code="59408-5", value=104, unit="%"))
    hr_zero = parse_event(vital(value=0))
    flagged = parse_event(vital(quality="artifact"))
    ok = parse_event(vital(value=31))  # severe bradycardia is physiology, not an artifact
    assert isinstance(over_100, VitalSample)
    assert isinstance(hr_zero, VitalSample)
    assert isinstance(flagged, VitalSample)
    assert isinstance(ok, VitalSample)
    assert over_100.artifact() is not None
    assert "above plausible maximum" in over_100.artifact()
    assert hr_zero.artifact() is not None
    assert flagged.artifact() == "flagged as artifact by the device"
    assert ok.artifact() is None


def test_signals_reference_page_is_in_sync_with_the_code() -> None:
    from pathlib import Path

    from twin.reference import signals_markdown

    page = Path(__file__).resolve().parents[2] / "docs" / "signals.md"
    assert page.read_text() == signals_markdown(), "run: python -m twin.reference > docs/signals.md"


def test_two_patients_same_instant_without_device_are_distinct_events() -> None:
    a = parse_event(vital(device_id=None, patient_id="pt-a"))
    b = parse_event(vital(device_id=None, patient_id="pt-b"))
    assert a.event_id != b.event_id
