"""Benchmark the training data pipeline: windows/s, default pipeline vs the cheap one.

Run: ``python benchmarks/bench_training.py --out var/bench/training.json``.

The same training and validation windows, the same TFT (same seed, same initial weights), the
same optimiser (Adam, pytorch-forecasting's learning rate), gradient clipping and epochs:

- ``default``: ``TimeSeriesDataSet`` (one group per window) -> ``to_dataloader`` -> Lightning
  ``Trainer.fit`` - pytorch-forecasting's documented pipeline;
- ``fast``: ``batches.WindowTensors`` (prebuilt tensors, batches by indexing) ->
  ``training.fit_network``, at the same batch size and at a larger one.

windows/s counts training windows per second of training-epoch time (validation excluded in
both); ``val_loss`` is ``training.validation_loss`` on the same validation windows for every
model, so the losses compare exactly. Target (issue): >= 3x the default pipeline's windows/s
at the same validation loss.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("var/bench/training.json"))
    ap.add_argument("--patients", type=int, default=120)
    ap.add_argument("--days", type=float, default=3.0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--big-batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--synthetic", action="store_true", help="models.synthetic, not the simulator")
    args = ap.parse_args()

    import lightning.pytorch as pl
    import torch

    from models import dataset, network, training
    from models.batches import WindowTensors
    from models.features import FeatureSpec

    torch.set_num_threads(args.threads)
    spec = FeatureSpec()
    if args.synthetic:
        from models import synthetic

        ds = synthetic.cohort(args.patients, args.days, seed=3)
    else:
        from streams.training_data import simulate_dataset

        ds, _ = simulate_dataset(args.patients, args.days, seed=3,
                                 risk={"sepsis": 4, "hf_decompensation": 3})  # fmt: skip
    w = dataset.build_windows(ds, spec)
    tr_ids, va_ids, _ = training.split_patients(ds.patient_ids, 3, 0.2, 0.05)
    w_tr = w.take(training.rows_of(w, tr_ids))
    w_va = w.take(training.rows_of(w, va_ids))
    net = network.NetConfig()
    val_t = WindowTensors(w_va, spec)
    out: dict = {
        "windows": {"train": w_tr.n, "val": w_va.n},
        "epochs": args.epochs,
        "threads": args.threads,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m_start": os.getloadavg()[0],
        },
    }

    # -- default: TimeSeriesDataSet + Trainer ------------------------------------------------
    t = time.perf_counter()
    tsd_tr = dataset.timeseries_dataset(dataset.to_frame(w_tr, spec), spec)
    tsd_va = dataset.timeseries_dataset(dataset.to_frame(w_va, spec), spec)
    build_s = time.perf_counter() - t
    training.seed_everything(0)
    model = network.build(spec, net)
    epoch_s: list[float] = []

    class Timer(pl.Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            self.t = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            epoch_s.append(time.perf_counter() - self.t)

    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator="cpu", gradient_clip_val=0.5, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[Timer()], num_sanity_val_steps=0,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer.fit(
        model,
        train_dataloaders=tsd_tr.to_dataloader(train=True, batch_size=args.batch_size),
        val_dataloaders=tsd_va.to_dataloader(train=False, batch_size=1024),
    )
    # Validation runs inside the epoch in Lightning; time it apart and subtract it.
    model.eval()
    t = time.perf_counter()
    with torch.inference_mode():
        for x, _ in tsd_va.to_dataloader(train=False, batch_size=1024):
            model(x)
    val_s = time.perf_counter() - t
    train_s = max(sum(epoch_s) - val_s * len(epoch_s), 1e-9)
    out["default"] = {
        "dataset_build_s": build_s,
        "batch_size": args.batch_size,
        "train_s": train_s,
        "windows_per_s": w_tr.n * args.epochs / train_s,
        "val_loss": training.validation_loss(model, val_t),
    }

    # -- fast: prebuilt tensors + fit_network --------------------------------------------------
    for label, bs in (("fast", args.batch_size), ("fast_big_batch", args.big_batch)):
        training.seed_everything(0)
        model = network.build(spec, net)
        cfg = training.TrainConfig(epochs=args.epochs, batch_size=bs, patience=99, seed=0,
                                   progress=False, plateau_patience=1000, net=net)  # fmt: skip
        t = time.perf_counter()
        tensors = WindowTensors(w_tr, spec)
        build_s = time.perf_counter() - t
        hist = training.fit_network(model, tensors, val_t, cfg)
        train_s = sum(h["seconds"] for h in hist)
        out[label] = {
            "tensor_build_s": build_s,
            "batch_size": bs,
            "train_s": train_s,
            "windows_per_s": w_tr.n * len(hist) / train_s,
            "val_loss": training.validation_loss(model, val_t),
        }
    base = out["default"]["windows_per_s"]
    out["speedup"] = {k: out[k]["windows_per_s"] / base for k in ("fast", "fast_big_batch")}
    out["val_loss_gap"] = {
        k: out[k]["val_loss"] - out["default"]["val_loss"] for k in ("fast", "fast_big_batch")
    }
    out["targets"] = {
        "speedup_3x_met": any(v >= 3 for v in out["speedup"].values()),
        "same_val_loss_within_2pct": {
            k: abs(out["val_loss_gap"][k]) <= 0.02 * out["default"]["val_loss"]
            for k in out["val_loss_gap"]
        },
    }
    out["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("windows", "speedup", "val_loss_gap", "targets")},
                     indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
