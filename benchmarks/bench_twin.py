"""Benchmark the pure core: samples/s through ``twin.apply`` and ``apply_many``, bytes per twin.

Run: ``python benchmarks/bench_twin.py --out var/bench/twin.json`` (``make bench`` does).
Single process, single thread: the figure is per core. Targets (issue #2): >= 100,000 vital
samples/s on one core; <= 16 KB per twin at steady state with full 24 h windows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from twin import TwinState, apply, apply_many, dump_event, parse_event
from twin.events import Event, VitalSample
from twin.signals import SIGNAL_TO_LOINC, SIGNALS, Signal

T0 = datetime(2026, 1, 5, tzinfo=UTC)

# (signal, every N minutes, mean, sd): a wearable plus ward observations and a CGM.
CHANNELS = [
    (Signal.HEART_RATE, 1, 78, 6),
    (Signal.SPO2, 1, 96, 1.2),
    (Signal.RESPIRATORY_RATE, 1, 16, 2),
    (Signal.STEPS, 1, 8, 10),
    (Signal.GLUCOSE, 5, 130, 25),
    (Signal.TEMPERATURE, 15, 36.9, 0.3),
    (Signal.SYSTOLIC_BP, 60, 124, 10),
]


def patient_stream(pid: str, hours: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    out: list[Event] = []
    for minute in range(hours * 60):
        at = T0 + timedelta(minutes=minute)
        for sig, every, mean, sd in CHANNELS:
            if minute % every:
                continue
            value = max(0.0, rng.gauss(mean, sd))
            if sig is not Signal.TEMPERATURE:
                value = round(value)
            out.append(
                VitalSample(
                    patient_id=pid,
                    observed_at=at,
                    code=SIGNAL_TO_LOINC[sig],
                    value=value,
                    unit=SIGNALS[sig].unit,
                    device_id="wearable-1",
                    source="bench",
                )
            )
    # Realistic delivery: a little jitter (< 2 min) so some arrive out of order.
    keyed = [(e.t_ms + rng.randint(0, 120_000), i, e) for i, e in enumerate(out)]
    return [e for _, _, e in sorted(keyed)]


def best_rate(fn: object, n_items: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return n_items / best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("var/bench/twin.json"))
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--hours", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    streams = [patient_stream(f"p{i}", args.hours, i) for i in range(args.patients)]
    n = sum(len(s) for s in streams)

    def run_apply() -> None:
        for evs in streams:
            state: TwinState | None = None
            for ev in evs:
                state, _ = apply(state, ev)

    def run_batches(batch: int) -> None:
        for evs in streams:
            state: TwinState | None = None
            for i in range(0, len(evs), batch):
                state, _ = apply_many(state, evs[i : i + batch])

    payloads = [dump_event(e) for e in streams[0]]

    def run_parse() -> None:
        for p in payloads:
            parse_event(p)

    results: dict[str, object] = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "samples": n,
        "patients": args.patients,
        "hours_per_patient": args.hours,
        "apply_samples_per_s": best_rate(run_apply, n, args.repeats),
        "apply_many_samples_per_s": {
            str(b): best_rate(lambda b=b: run_batches(b), n, args.repeats) for b in (100, 1000)
        },
        "parse_event_per_s": best_rate(run_parse, len(payloads), args.repeats),
    }
    final, _ = apply_many(None, streams[0])
    assert final is not None
    data = final.to_bytes()
    _values, mask = final.window()
    results["bytes_per_twin"] = len(data)
    results["window_bins_filled"] = int(mask.any(axis=0).sum())
    results["targets"] = {"samples_per_s": 100_000, "bytes_per_twin": 16 * 1024}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
