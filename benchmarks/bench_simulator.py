"""Simulator benchmark: patient-hours per second at 1-minute resolution, and memory.

    python benchmarks/bench_simulator.py --out var/bench/simulator.json          # a few minutes
    python benchmarks/bench_simulator.py --out var/bench/simulator.json --quick  # under a minute

Stages run in fresh subprocesses so each peak RSS is its own:

- ``throughput``: batch generation (every channel, EHR and labels as arrays, nothing written)
  of a cohort on one core (BLAS/OpenMP threads pinned to 1). Patient-hours per second of CPU
  time (the honest number on a shared machine) and of wall time.
- ``dataset``: the same plus writing the parquet dataset (samples, EHR, labels, ...).
- ``large`` (full run only): a 10,000-patient, 7-day cohort generated in batch, with its peak
  memory; and ``large_dataset``: the same cohort written to parquet (time, size, memory).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported, by this process and its subprocesses

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_PATIENT_HOURS_PER_S = 100_000
MACHINE_MEMORY_GB = 24


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _stage(name: str, patients: int, days: float, seed: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from simulators import DatasetWriter, SimulationConfig, simulate

    config = SimulationConfig(patients=patients, days=days, seed=seed)
    samples = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {"stage": name, "patients": patients, "days": days}
    if name in ("throughput", "large"):
        for chunk in simulate(config):
            samples += sum(int(c.sent.sum()) for c in chunk.channels.values())
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench-sim-", dir=ROOT / "var" / "bench"))
        try:
            with DatasetWriter(tmp, config) as writer:
                for chunk in simulate(config):
                    writer.write(chunk)
            samples = writer.rows["samples"]
            out["rows"] = writer.rows
            out["dataset_mb"] = round(sum(f.stat().st_size for f in tmp.iterdir()) / 2**20, 1)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    hours = patients * days * 24
    out.update(
        patient_hours=hours,
        samples=samples,
        wall_s=round(wall, 2),
        cpu_s=round(cpu, 2),
        patient_hours_per_cpu_s=round(hours / cpu),
        patient_hours_per_wall_s=round(hours / wall),
        samples_per_cpu_s=round(samples / cpu),
        peak_rss_mb=round(_peak_rss_mb(), 1),
    )
    return out


def _run_stage(name: str, patients: int, days: float, seed: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--stage",
        name,
        "--patients",
        str(patients),
        "--days",
        str(days),
        "--seed",
        str(seed),
    ]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {name}: {json.dumps(result)}", file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "simulator.json")
    parser.add_argument("--quick", action="store_true", help="small cohorts, under a minute")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--patients", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--days", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:  # child process: one measurement, JSON on stdout
        print(json.dumps(_stage(args.stage, args.patients, args.days, args.seed)))
        return 0
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)
    plan = [
        ("throughput", 512 if args.quick else 2048, 7.0),
        ("dataset", 64 if args.quick else 256, 7.0),
    ]
    if not args.quick:
        plan += [("large", 10_000, 7.0), ("large_dataset", 10_000, 7.0)]
    print(f"simulator benchmark ({'quick' if args.quick else 'full'})", file=sys.stderr)
    results = {name: _run_stage(name, n, days, args.seed) for name, n, days in plan}
    throughput = results["throughput"]["patient_hours_per_cpu_s"]
    report: dict[str, Any] = {
        "benchmark": "simulator",
        "mode": "quick" if args.quick else "full",
        "resolution": "1 minute",
        "threads": 1,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "target_patient_hours_per_s": TARGET_PATIENT_HOURS_PER_S,
        "patient_hours_per_s": throughput,
        "meets_target": throughput >= TARGET_PATIENT_HOURS_PER_S,
        "stages": results,
    }
    if "large" in results:
        report["large_cohort_fits"] = all(
            results[k]["peak_rss_mb"] < MACHINE_MEMORY_GB * 1024 for k in ("large", "large_dataset")
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
