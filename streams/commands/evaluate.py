"""``vitaltwin evaluate``: score a checkpoint on held-out cohorts; JSON and an HTML report.

By default two simulated cohorts the model never saw: one like the training cohort but from
another seed, and one with a shifted case mix (mostly home-monitored patients, heart failure
and COPD exacerbations more frequent than sepsis). ``--data DIR`` evaluates a dataset in the
models schema instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from streams.commands import positive_int
from streams.commands.train import DEFAULT_RISK, parse_risk

SHIFTED_RISK = "sepsis=2,hf_decompensation=6,copd_exacerbation=6"


def register(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="evaluate a forecaster checkpoint on held-out cohorts")
    p.add_argument("--model", type=Path, default=None, help="checkpoint (default: shipped)")
    p.add_argument("--data", type=Path, help="evaluate this dataset (models schema) only")
    p.add_argument(
        "--patients",
        type=positive_int,
        default=1200,
        help="per cohort (1,200 x 5 days: ~90 deteriorations at the training case mix)",
    )
    p.add_argument("--days", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=11, help="held-out seed (training used 7)")
    p.add_argument("--risk", type=parse_risk, default=parse_risk(DEFAULT_RISK))
    p.add_argument("--shifted-risk", type=parse_risk, default=parse_risk(SHIFTED_RISK))
    p.add_argument("--shifted-home-fraction", type=float, default=0.8)
    p.add_argument("--no-shifted", action="store_true", help="skip the shifted case-mix cohort")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "lean", "torchscript", "torch", "onnx"],
        help="network runner (auto: lean; torchscript: bit-identical to predict())",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="batch chunks run at once (2 x 1 thread on 2 cores)",
    )
    p.add_argument("--out", type=Path, default=Path("var/eval"), help="report directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models import evaluation, report
    from models.errors import ModelsError
    from models.fastpath import Forecaster
    from models.registry import DEFAULT_DIR
    from models.schema import load_dataset

    t0 = time.monotonic()
    try:
        fc = Forecaster.load(
            args.model or DEFAULT_DIR,
            backend=args.backend,
            threads=args.threads,
            workers=args.workers,
        )
        cohorts: list[tuple[str, Any]] = []
        if args.data is not None:
            cohorts.append((str(args.data), load_dataset(args.data)))
        else:
            from streams.training_data import simulate_dataset

            ds, _ = simulate_dataset(args.patients, args.days, args.seed, risk=args.risk)
            cohorts.append((f"held-out seed {args.seed}", ds))
            if not args.no_shifted:
                ds, _ = simulate_dataset(
                    args.patients,
                    args.days,
                    args.seed + 1,
                    risk=args.shifted_risk,
                    home_fraction=args.shifted_home_fraction,
                )
                cohorts.append((f"shifted case mix seed {args.seed + 1}", ds))
        results = [evaluation.evaluate(fc, ds, name=name) for name, ds in cohorts]
    except ModelsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    path = report.write(results, fc.checkpoint.metadata, args.out)
    summary = {
        "report": str(path),
        "json": str(args.out / "evaluation.json"),
        "seconds": round(time.monotonic() - t0, 1),
        "targets": {r["cohort"]: r["targets"] for r in results},
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0
