"""Benchmark the columnar sample lane against the per-sample path: decode + fold per sample.

Run: ``python benchmarks/bench_lane.py --out var/bench/lane.json``.

Both paths run in this one process on the same wearable records (JSON bytes, one patient per
record, ``--patients`` patients), as the Kafka worker meets them:

- *old*: ``Ingress.decode`` (``parse_event`` per sample) then ``twin.apply_many`` over the
  events, one call per record;
- *lane*: ``Ingress.decode_columnar`` (one ``VitalBatch`` per record) then
  ``twin.apply_many`` over that batch (what ``twin.apply_samples`` does), one call per record.

Each path is timed ``--repeats`` times from fresh twins, alternating, on records with fresh
timestamps each time, and the best run of each is reported in microseconds per sample, split into decode and fold, at 3 and 30 samples per
record. Times are this process's CPU time (``time.process_time``), which other load on a shared
machine disturbs less than wall time; still, compare the ratio, measured side by side, more
than the absolute figures. Both paths must end in equal twins and effects (checked). Target
(issue #4): lane decode + fold <= 5 us a sample at 30 samples a record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from streams.ingress import Ingress, SourceKind
from twin import TwinState, apply_many
from twin.effects import Effect

T0 = datetime(2026, 1, 5, tzinfo=UTC)
# (LOINC, mean, sd, unit, decimals): what a wearable and a ward cuff/thermometer send.
CODES = [
    ("8867-4", 80, 8, "/min", 0),
    ("59408-5", 96, 1.5, "%", 0),
    ("9279-1", 16, 2, "/min", 0),
    ("8310-5", 36.9, 0.3, "Cel", 1),
    ("8480-6", 124, 10, "mm[Hg]", 0),
    ("55423-8", 8, 10, "1", 0),
]


def wearable_records(
    n_patients: int, minutes: int, per_record: int, t0: datetime = T0, seed: int = 1
) -> list[tuple[str, bytes]]:
    """(patient token, record bytes) in time order, as ``bench_kafka`` produces them.

    Values follow a slow random walk per patient and signal, so scores change now and then.
    """
    rng = random.Random(seed)
    per_minute = min(per_record, len(CODES))
    minutes_per_record = max(1, per_record // per_minute)
    level = [[rng.gauss(c[1], c[2]) for c in CODES] for _ in range(n_patients)]
    out: list[tuple[str, bytes]] = []
    for m0 in range(0, minutes, minutes_per_record):
        for p in range(n_patients):
            pid = f"pt-{p:020d}"
            samples: list[dict[str, Any]] = []
            for m in range(m0, min(minutes, m0 + minutes_per_record)):
                at = (t0 + timedelta(minutes=m, seconds=p % 60)).isoformat()
                for c, (code, mean, sd, unit, decimals) in enumerate(CODES[:per_minute]):
                    level[p][c] += 0.1 * (mean - level[p][c]) + rng.gauss(0, 0.3 * sd)
                    value = max(0.0, level[p][c])
                    samples.append(
                        {
                            "patient_id": pid,
                            "device_id": f"dev-{p:020d}",
                            "observed_at": at,
                            "code": code,
                            "value": round(value, decimals) if decimals else round(value),
                            "unit": unit,
                        }
                    )
            out.append((pid, json.dumps({"samples": samples}).encode()))
    return out


@dataclass
class Run:
    decode_s: float
    fold_s: float
    states: dict[str, TwinState]
    effects: list[Effect]


def fold_records(
    ingress: Ingress, records: list[tuple[str, bytes]], received: datetime, lane: bool
) -> Run:
    """Decode and fold every record, on the lane or on the per-sample path."""
    decode = ingress.decode_columnar if lane else ingress.decode
    states: dict[str, TwinState] = {}
    effects: list[Effect] = []
    decode_s = fold_s = 0.0
    for pid, raw in records:
        t0 = time.process_time()
        res = decode(SourceKind.WEARABLE, raw, received_at=received, source="bench")
        t1 = time.process_time()
        if lane and len(res.batches) != 1:
            raise SystemExit("a benchmark record left the lane")
        state, fx = apply_many(states.get(pid), res.batches or res.events)
        t2 = time.process_time()
        if state is None or res.dead:
            raise SystemExit("a benchmark record was dead-lettered")
        states[pid] = state
        effects.extend(fx)
        decode_s += t1 - t0
        fold_s += t2 - t1
    return Run(decode_s, fold_s, states, effects)


def measure(per_record: int, args: argparse.Namespace) -> dict[str, Any]:
    minutes = max(1, args.samples // (args.patients * min(per_record, len(CODES))))
    ingress = Ingress()
    best: dict[str, Run] = {}
    n = n_records = n_effects = 0
    for repeat in range(args.repeats):
        # Fresh timestamps each repeat: the lane caches parsed timestamps, and a stream does
        # not repeat them.
        t0 = T0 + timedelta(days=repeat)
        records = wearable_records(args.patients, minutes, per_record, t0)
        n = sum(len(json.loads(raw)["samples"]) for _, raw in records)
        n_records = len(records)
        received = t0 + timedelta(minutes=minutes + 1)
        runs = {n: fold_records(ingress, records, received, n == "lane") for n in ("old", "lane")}
        old, lane = runs["old"], runs["lane"]
        if old.effects != lane.effects or old.states != lane.states:
            raise SystemExit("the lane and the per-sample path disagree")
        n_effects = len(old.effects)
        for name, run in runs.items():
            if name not in best or run.decode_s + run.fold_s < (
                best[name].decode_s + best[name].fold_s
            ):
                best[name] = run
    old, lane = best["old"], best["lane"]

    def us(seconds: float) -> float:
        return round(seconds / n * 1e6, 3)

    result: dict[str, Any] = {"samples": n, "records": n_records, "effects": n_effects}
    for name, run in best.items():
        result[name] = {
            "decode_us_per_sample": us(run.decode_s),
            "fold_us_per_sample": us(run.fold_s),
            "total_us_per_sample": us(run.decode_s + run.fold_s),
        }
    result["speedup"] = round((old.decode_s + old.fold_s) / (lane.decode_s + lane.fold_s), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("var/bench/lane.json"))
    parser.add_argument("--samples", type=int, default=30_000, help="per measurement (approx.)")
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "per_record": {str(k): measure(k, args) for k in (3, 30)},
        "target_lane_us_per_sample_at_30": 5.0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
