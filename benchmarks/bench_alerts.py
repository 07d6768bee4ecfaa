"""Measure the alert policy on a simulated cohort: alerts per patient-day, PPV, lead time.

Run: ``python benchmarks/bench_alerts.py --out var/bench/alerts.json``.

The cohort comes from ``cohort_streams`` below: a small, seeded, self-contained generator
(wearable HR/RR/SpO2 every minute, hourly cuff BP, 4-hourly temperature and ACVPU) in which a
share of patients deteriorates over the 12 h before an *onset* (the outcome: the moment a rapid
response would be called) and recovers after it, and everyone shows the artefacts that drive
alarm fatigue: motion spikes in HR and RR, SpO2 probe dips, chronically low SpO2 in COPD.
It stands in for ``simulators/`` until that package exposes per-patient event streams with
outcome times; swapping it is one function (same return shape).

Every patient's events go through ``twin.apply_many`` minute by minute and
``twin.alerting.evaluate`` after each minute, with the default policy (no forecaster is wired
here, so the forecast rule stays silent). Metrics follow ``twin.alerting.metrics``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from twin import TwinState, apply_many
from twin.alerting import DEFAULT_POLICY, AlertBook, Episode, alert_metrics, evaluate
from twin.events import ConsciousnessAssessment, Event, OxygenTarget, VitalSample, to_ms
from twin.signals import SIGNAL_TO_LOINC, SIGNALS, Signal

T0 = datetime(2026, 1, 5, tzinfo=UTC)
H_MIN = 60


@dataclass(frozen=True, slots=True)
class PatientStream:
    patient_id: str
    minutes: list[list[Event]]  # events observed in each minute of the stay
    onset_ms: int | None  # outcome time, None when the patient did not deteriorate


def _vital(pid: str, sig: Signal, value: float, minute: int) -> VitalSample:
    return VitalSample(
        patient_id=pid,
        observed_at=T0 + timedelta(minutes=minute),
        code=SIGNAL_TO_LOINC[sig],
        value=value,
        unit=SIGNALS[sig].unit,
        device_id="wearable",
        source="bench",
    )


def patient_stream(index: int, hours: int, p_deteriorate: float, seed: int) -> PatientStream:
    rng = random.Random(seed * 1_000_003 + index)
    pid = f"bench-{index:04d}"
    n = hours * H_MIN
    hr0, rr0 = rng.gauss(78, 9), rng.gauss(16, 1.5)
    copd = rng.random() < 0.12
    spo2_0 = rng.gauss(92.5, 1.0) if copd else min(99.0, rng.gauss(96.5, 1.2))
    sbp0, temp0 = rng.gauss(125, 12), rng.gauss(36.8, 0.25)
    onset = None
    if rng.random() < p_deteriorate:
        onset = rng.randint(16 * H_MIN, n - 4 * H_MIN)
    minutes: list[list[Event]] = [[] for _ in range(n)]
    if copd and rng.random() < 0.5:  # half of them have a prescribed 88-92 % target
        minutes[0].append(OxygenTarget(patient_id=pid, observed_at=T0, spo2_scale=2))
    hr_n = rr_n = sp_n = 0.0
    spike = dip = 0
    for m in range(n):
        sev = 0.0
        if onset is not None:
            if onset - 12 * H_MIN <= m <= onset:
                sev = ((m - (onset - 12 * H_MIN)) / (12 * H_MIN)) ** 1.5
            elif m > onset:
                sev = math.exp(-(m - onset) / (3 * H_MIN))  # treated: recovers over hours
        hr_n = 0.9 * hr_n + rng.gauss(0, 2.2)
        rr_n = 0.9 * rr_n + rng.gauss(0, 0.9)
        sp_n = 0.8 * sp_n + rng.gauss(0, 0.6)
        if spike == 0 and rng.random() < 0.01:
            spike = rng.randint(1, 4)  # motion: a few minutes of tachycardia and tachypnoea
        if dip == 0 and rng.random() < 0.004:
            dip = rng.randint(1, 3)  # probe slipping: a short SpO2 dip
        hr = hr0 + 38 * sev + hr_n + (35 if spike else 0)
        rr = rr0 + 11 * sev + rr_n + (8 if spike else 0)
        spo2 = min(100.0, spo2_0 - 7 * sev + sp_n - (8 if dip else 0))
        spike, dip = max(0, spike - 1), max(0, dip - 1)
        out = minutes[m]
        out += [
            _vital(pid, Signal.HEART_RATE, round(hr), m),
            _vital(pid, Signal.RESPIRATORY_RATE, round(rr), m),
            _vital(pid, Signal.SPO2, round(spo2), m),
        ]
        if m % 60 == 0:
            out.append(_vital(pid, Signal.SYSTOLIC_BP, round(sbp0 - 32 * sev + rng.gauss(0, 6)), m))
        if m % 240 == 0:
            out.append(
                _vital(pid, Signal.TEMPERATURE, round(temp0 + 1.6 * sev + rng.gauss(0, 0.2), 1), m)
            )
            level = "C" if sev > 0.85 else "A"
            at = T0 + timedelta(minutes=m)
            out.append(ConsciousnessAssessment(patient_id=pid, observed_at=at, level=level))  # type: ignore[arg-type]
    onset_ms = None if onset is None else to_ms(T0 + timedelta(minutes=onset))
    return PatientStream(pid, minutes, onset_ms)


def cohort_streams(
    patients: int, hours: int, p_deteriorate: float, seed: int
) -> list[PatientStream]:
    return [patient_stream(i, hours, p_deteriorate, seed) for i in range(patients)]


def run_patient(stream: PatientStream) -> tuple[list[Episode], int, float]:
    """Episodes, evaluate calls and seconds spent in evaluate."""
    state: TwinState | None = None
    book: AlertBook | None = None
    episodes: dict[str, Episode] = {}
    calls, spent = 0, 0.0
    for events in stream.minutes:
        state, _ = apply_many(state, events)
        assert state is not None
        start = time.perf_counter()
        book, notes = evaluate(book, state, state.watermark_ms, DEFAULT_POLICY)
        spent += time.perf_counter() - start
        calls += 1
        for n in notes:
            if n.status == "firing":
                ep = episodes.get(n.alert_id)
                count = 1 if ep is None else ep.notifications + 1
                episodes[n.alert_id] = Episode(n.patient_id, n.rule, n.starts_at_ms, count)
    return list(episodes.values()), calls, spent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("var/bench/alerts.json"))
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--deteriorate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--window-h", type=float, default=24.0)
    args = parser.parse_args()

    started = time.perf_counter()
    streams = cohort_streams(args.patients, args.hours, args.deteriorate, args.seed)
    episodes: list[Episode] = []
    calls, spent = 0, 0.0
    for s in streams:
        eps, c, t = run_patient(s)
        episodes += eps
        calls, spent = calls + c, spent + t
    patient_days = args.patients * args.hours / 24
    outcomes = {s.patient_id: s.onset_ms for s in streams}
    report = {
        "benchmark": "alerts",
        "cohort": {
            "generator": "benchmarks/bench_alerts.py:cohort_streams (synthetic, seeded)",
            "patients": args.patients,
            "hours": args.hours,
            "patient_days": patient_days,
            "deteriorating": sum(1 for s in streams if s.onset_ms is not None),
            "seed": args.seed,
        },
        "policy": "twin.alerting.DEFAULT_POLICY",
        "window_h": args.window_h,
        "metrics": alert_metrics(
            episodes, outcomes=outcomes, patient_days=patient_days, window_h=args.window_h
        ),
        "evaluate_us_per_call": round(spent / calls * 1e6, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
