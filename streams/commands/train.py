"""``vitaltwin train``: fit the TFT risk-trajectory model on a simulated cohort or your dataset.

Data: ``--data DIR`` reads a dataset in the documented schema (``models.schema``, parquet);
otherwise a cohort is simulated (``--patients``, ``--days``, ``--seed``, ``--risk``), and with
it a second cohort of the same case mix (``--risk-patients``, seed ``--seed`` + 100) that only
the risk heads are fitted on. The checkpoint (weights, ONNX, metadata) goes to ``--out``. The
shipped model is reproduced by

    vitaltwin train --patients 400 --days 5 --seed 7 --out models/checkpoints/default
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_RISK = "sepsis=4,hf_decompensation=3,copd_exacerbation=3"
# The risk cohort's seed is the training seed plus this: other patients than the network's, and
# away from the evaluation's defaults (11 and 12) for the shipped seed 7.
RISK_COHORT_SEED_OFFSET = 100


def parse_risk(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--risk wants name=multiplier, got {part!r}"
            ) from None
    return out


def add_cohort_arguments(p: argparse.ArgumentParser, seed: int) -> None:
    p.add_argument("--data", type=Path, help="a dataset directory in the models schema (parquet)")
    p.add_argument("--patients", type=int, default=400, help="simulated patients")
    p.add_argument("--days", type=float, default=5.0, help="simulated days per patient")
    p.add_argument("--seed", type=int, default=seed, help="root seed (simulation and training)")
    p.add_argument(
        "--risk",
        type=parse_risk,
        default=parse_risk(DEFAULT_RISK),
        help=f"onset-hazard multipliers per condition (default {DEFAULT_RISK})",
    )
    p.add_argument("--home-fraction", type=float, default=0.3, help="share of patients at home")
    p.add_argument("--save-dataset", type=Path, help="also write the dataset (schema) here")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train the TFT forecaster and risk head (checkpoint + metadata)"
    )
    add_cohort_arguments(p, seed=7)
    p.add_argument(
        "--risk-patients",
        type=int,
        default=800,
        help="simulated patients the risk heads are also fitted on (0: none; not with --data)",
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument("--name", default=None, help="model name (default: the --out folder name)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--patience", type=int, default=3, help="early stopping, in epochs")
    p.add_argument("--stride", type=int, default=1, help="forecast origins every N steps")
    p.add_argument("--hidden", type=int, default=16, help="TFT hidden size")
    p.add_argument("--heads", type=int, default=2, help="attention heads")
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on shared cores 2 threads collapsed throughput)",
    )
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this long")
    p.add_argument("--no-onnx", action="store_true", help="do not export model.onnx")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def load_cohort(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from models.schema import load_dataset

    if args.data is not None:
        ds = load_dataset(args.data)
        return ds, {"dataset": str(args.data)}
    from streams.training_data import simulate_dataset

    ds, source = simulate_dataset(
        args.patients, args.days, args.seed, risk=args.risk, home_fraction=args.home_fraction
    )
    if args.save_dataset is not None:
        ds.save(args.save_dataset)
    return ds, source


def load_risk_cohort(args: argparse.Namespace, source: dict[str, Any]) -> Any:
    """The risk heads' extra cohort: the training cohort's recipe, another seed (or None)."""
    if args.data is not None or args.risk_patients <= 0:
        return None
    from streams.training_data import simulate_dataset

    ds, risk_source = simulate_dataset(
        args.risk_patients,
        args.days,
        args.seed + RISK_COHORT_SEED_OFFSET,
        risk=args.risk,
        home_fraction=args.home_fraction,
    )
    source["risk_cohort"] = risk_source
    return ds


def run(args: argparse.Namespace) -> int:
    from models import training
    from models.errors import ModelsError
    from models.features import FeatureSpec
    from models.network import NetConfig

    _log_progress()
    t0 = time.monotonic()
    try:
        ds, source = load_cohort(args)
        risk_ds = load_risk_cohort(args, source)
    except ModelsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stderr.write(
        f"data: {len(ds.patient_ids)} patients, {len(ds.samples):,} samples "
        f"({time.monotonic() - t0:.0f} s)\n"
    )
    cfg = training.TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        seed=args.seed,
        threads=args.threads,
        max_minutes=args.max_minutes,
        stride_steps=args.stride,
        onnx=not args.no_onnx,
        progress=not args.no_progress,
        net=NetConfig(
            hidden_size=args.hidden,
            attention_head_size=args.heads,
            learning_rate=args.learning_rate,
        ),
    )
    try:
        result = training.train(
            ds,
            FeatureSpec(),
            cfg,
            args.out,
            name=args.name or args.out.name,
            source=source,
            risk_ds=risk_ds,
        )
    except ModelsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    summary = {
        "checkpoint": str(result.path),
        "seconds": round(result.seconds, 1),
        "epochs": len(result.history),
        "val_loss": result.metrics["val_loss"],
        "coverage_80": result.metrics["forecast"]["coverage_all"]["80"],
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0


def _log_progress() -> None:
    """Epoch summaries on stderr even when the CLI runs at the default WARNING level."""
    logger = logging.getLogger("models")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "_vitaltwin", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._vitaltwin = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
