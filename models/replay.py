"""Replaying a dataset into twins: the events its rows stand for, in observed-time order.

Tests use it to check that windows built from a dataset equal the fast path's inputs from a
live ``TwinState``; benchmarks and demos use it to make realistic twins from a dataset.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.schema import COMORBIDITIES, Dataset
from twin.events import (
    ConsciousnessAssessment,
    Demographics,
    Diagnosis,
    Event,
    LabResult,
    MedicationEvent,
    OxygenTherapy,
    VitalSample,
)
from twin.signals import SIGNAL_TO_LOINC, SIGNALS, Signal


def _ts(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(ms))


def twin_events(ds: Dataset, patient_id: str, until_ms: int) -> list[Event]:
    """One patient's events observed before ``until_ms`` (labs only once released by then)."""
    out: list[Event] = []
    st = ds.static[ds.static["patient_id"] == patient_id].iloc[0]
    first = int(ds.samples["t_ms"].min())
    born = (_ts(first) - timedelta(days=float(st["age"]) * 365.25)).date()
    out.append(
        Demographics(patient_id=patient_id, observed_at=_ts(first), birth_date=born, sex=st["sex"])
    )
    for name in COMORBIDITIES:
        if bool(st[name]):
            out.append(Diagnosis(patient_id=patient_id, observed_at=_ts(first), condition=name))
    s = ds.samples[(ds.samples["patient_id"] == patient_id) & (ds.samples["t_ms"] < until_ms)]
    for row in s.itertuples(index=False):
        sig = Signal(row.signal)
        at = _ts(row.t_ms)
        if sig is Signal.CONSCIOUSNESS:
            out.append(
                ConsciousnessAssessment(patient_id=patient_id, observed_at=at, level=int(row.value))
            )
        elif sig is Signal.O2_FLOW:
            out.append(
                OxygenTherapy(
                    patient_id=patient_id, observed_at=at, on=row.value > 0, flow_l_min=row.value
                )
            )
        elif SIGNALS[sig].kind == "lab":
            avail = row.available_ms if "available_ms" in s.columns else row.t_ms
            if avail >= until_ms:
                continue  # not yet released when the forecast is made
            out.append(
                LabResult(
                    patient_id=patient_id,
                    observed_at=at,
                    issued_at=_ts(avail),
                    code=SIGNAL_TO_LOINC[sig],
                    value=row.value,
                    unit=SIGNALS[sig].unit,
                )
            )
        else:
            out.append(
                VitalSample(
                    patient_id=patient_id,
                    observed_at=at,
                    source="test",
                    code=SIGNAL_TO_LOINC[sig],
                    value=row.value,
                    unit=SIGNALS[sig].unit,
                )
            )
    t = ds.treatments[
        (ds.treatments["patient_id"] == patient_id) & (ds.treatments["t_ms"] < until_ms)
    ]
    for row in t.itertuples(index=False):
        out.append(
            MedicationEvent(
                patient_id=patient_id,
                observed_at=_ts(row.t_ms),
                medication=row.medication,
                action=row.action,
            )
        )
    out.sort(key=lambda e: e.t_ms)
    return out
