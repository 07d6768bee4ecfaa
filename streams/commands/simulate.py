"""``vitaltwin simulate``: generate a synthetic cohort as a parquet dataset (and plot a patient).

    vitaltwin simulate --patients 1000 --days 7 --seed 1 --out var/sim/cohort
    vitaltwin simulate --patients 50 --days 1 --seed 1 --out /tmp/sim --plot 3

An adapter only: it parses arguments, runs ``simulators`` and reports.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pyarrow.compute as pc
from tqdm import tqdm

from simulators import (
    DEFAULT_START,
    DatasetWriter,
    SimulationConfig,
    SimulatorError,
    parse_shard,
    plot_patient,
    read_table,
    simulate,
)

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="generate a synthetic cohort (parquet) with ground truth",
        description="Simulate a cohort of patient twins and write samples, EHR events and "
        "ground-truth labels as parquet tables (see docs/simulator.md).",
    )
    p.add_argument("--patients", type=int, required=True, help="cohort size")
    p.add_argument("--days", type=float, default=7.0, help="horizon in days (default 7)")
    p.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="output directory (parquet dataset)")
    p.add_argument(
        "--start",
        type=_aware,
        default=DEFAULT_START,
        help=f"scenario start, ISO 8601 with offset (default {DEFAULT_START.isoformat()})",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="simulate only the I-th of N contiguous blocks of patients (0-based)",
    )
    p.add_argument(
        "--home-fraction",
        type=float,
        default=0.3,
        help="share of patients on home monitoring (default 0.3)",
    )
    p.add_argument(
        "--risk",
        action="append",
        default=[],
        metavar="CONDITION=X",
        help="multiply a condition's onset hazard (enrich a cohort); repeatable",
    )
    p.add_argument(
        "--no-usual-care",
        action="store_true",
        help="no simulated clinicians: episodes run untreated",
    )
    p.add_argument("--fhir", action="store_true", help="store each EHR event's FHIR R4 JSON")
    p.add_argument(
        "--plot",
        action="append",
        default=[],
        metavar="PATIENT",
        help="also write a PNG of this patient (id or index); repeatable",
    )
    p.add_argument(
        "--plot-out",
        type=Path,
        default=None,
        help="PNG path for a single --plot (default OUT/plots/<patient>.png)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset")
    return value


def _risk(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        name, _, mult = item.partition("=")
        try:
            out[name.strip()] = float(mult)
        except ValueError:
            raise SimulatorError(f"--risk expects CONDITION=MULTIPLIER, got {item!r}") from None
    return out


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except SimulatorError as exc:
        sys.stderr.write(f"vitaltwin simulate: {exc}\n")
        return 2


def _run(args: argparse.Namespace) -> int:
    config = SimulationConfig(
        patients=args.patients,
        days=args.days,
        seed=args.seed,
        start=args.start,
        home_fraction=args.home_fraction,
        usual_care=not args.no_usual_care,
        risk=_risk(args.risk),
    )
    indices = parse_shard(args.shard, config.patients) if args.shard else range(config.patients)
    began = time.perf_counter()
    bar = tqdm(
        total=len(indices),
        unit="patient",
        file=sys.stderr,
        disable=args.no_progress,
        desc="simulating",
    )
    with DatasetWriter(args.out, config, fhir=args.fhir) as writer:
        for chunk in simulate(config, indices=indices, progress=bar.update):
            writer.write(chunk)
    bar.close()
    elapsed = time.perf_counter() - began
    outcomes = Counter(read_table(args.out, "patients").column("outcome").to_pylist())
    labels = read_table(args.out, "labels")
    by_condition = Counter(labels.column("condition").to_pylist())
    lines = [
        f"wrote {args.out} in {elapsed:.1f} s "
        f"({len(indices) * config.days * 24 / max(elapsed, 1e-9):,.0f} patient-hours/s)",
        "rows: " + ", ".join(f"{k} {v:,}" for k, v in writer.rows.items()),
        "patients by outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
        "episodes: " + (", ".join(f"{k} {v}" for k, v in sorted(by_condition.items())) or "none"),
    ]
    if labels.num_rows:
        crit = pc.sum(pc.is_valid(labels.column("critical_at"))).as_py()
        lines.append(f"critical events: {crit}")
    for item in args.plot:
        pid = config.patient_id(int(item)) if item.isdigit() else item
        out = (
            args.plot_out
            if (args.plot_out and len(args.plot) == 1)
            else args.out / "plots" / f"{pid}.png"
        )
        plot_patient(args.out, pid, out)
        lines.append(f"plot: {out}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
