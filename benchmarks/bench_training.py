"""Benchmark the training data pipeline: windows/s, default pipeline vs the cheap one.

Run: ``python benchmarks/bench_training.py --out var/bench/training.json``.

The same training and validation windows, the same TFT (same seed, same initial weights), the
same optimiser (Adam, pytorch-forecasting's learning rate), gradient clipping and epochs:

- ``default``: ``TimeSeriesDataSet`` (one group per window) -> ``to_dataloader`` -> Lightning
  ``Trainer.fit`` - pytorch-forecasting's documented pipeline;
- ``fast``: ``batches.WindowTensors`` (prebuilt tensors, batches by indexing) ->
  ``training.fit_network`` (flat-buffer Adam, stacked variable selection), at the same batch
  size; optionally once more at a larger batch, for information only (another hyperparameter).

Each pipeline runs ``--seeds`` times (seed of batch order and dropout; same initial weights),
interleaved fast/default so that load from other work hits both alike; the spread between
seeds is the noise the validation-loss gap is read against. windows/s counts the windows
trained on per second of training-epoch time (validation excluded in both; the default
dataloader drops a last short batch); ``val_loss`` is ``training.validation_loss`` on the same
validation windows for every model, so the losses compare exactly. Target (issue): >= 3x the
default pipeline's windows/s at the same validation loss.
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
    ap.add_argument("--big-batch", type=int, default=512, help="0: skip")
    # The issue measures on 2 cores; --threads 1 gives the single-thread comparison.
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2, help="runs per pipeline, interleaved")
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

        ds, _ = simulate_dataset(
            args.patients, args.days, seed=3, risk={"sepsis": 4, "hf_decompensation": 3}
        )
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

    def run_fast(label: str, bs: int, seed: int) -> None:
        training.seed_everything(0)  # the same initial weights as the default pipeline
        model = network.build(spec, net)
        torch.manual_seed(seed)  # dropout; ``cfg.seed`` orders the batches
        cfg = training.TrainConfig(
            epochs=args.epochs,
            batch_size=bs,
            patience=99,
            seed=seed,
            progress=False,
            plateau_patience=1000,
            net=net,
        )
        t = time.perf_counter()
        tensors = WindowTensors(w_tr, spec)
        build_s = time.perf_counter() - t
        hist = training.fit_network(model, tensors, val_t, cfg)
        train_s = sum(h["seconds"] for h in hist)
        out[label] = {
            "tensor_build_s": build_s,
            "batch_size": bs,
            "seed": seed,
            "train_s": train_s,
            "windows_per_s": w_tr.n * len(hist) / train_s,
            "val_loss": training.validation_loss(model, val_t),
            "load_avg_1m": os.getloadavg()[0],
        }

    def run_default(label: str, seed: int) -> None:
        t = time.perf_counter()
        tsd_tr = dataset.timeseries_dataset(dataset.to_frame(w_tr, spec), spec)
        tsd_va = dataset.timeseries_dataset(dataset.to_frame(w_va, spec), spec)
        build_s = time.perf_counter() - t
        training.seed_everything(0)
        model = network.build(spec, net)
        epoch_s: list[float] = []
        trained = [0]  # windows actually trained on: the train dataloader drops a last short batch

        class Timer(pl.Callback):
            def on_train_epoch_start(self, trainer, module) -> None:
                self.t = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
                trained[0] += int(batch[0]["encoder_lengths"].shape[0])

            def on_train_epoch_end(self, trainer, module) -> None:
                epoch_s.append(time.perf_counter() - self.t)

        trainer = pl.Trainer(
            max_epochs=args.epochs,
            accelerator="cpu",
            gradient_clip_val=0.5,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[Timer()],
            num_sanity_val_steps=0,
        )
        torch.manual_seed(seed)  # dropout and the dataloader's shuffling
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
        out[label] = {
            "dataset_build_s": build_s,
            "batch_size": args.batch_size,
            "seed": seed,
            "train_s": train_s,
            "windows_trained": trained[0],
            "windows_per_s": trained[0] / train_s,
            "val_loss": training.validation_loss(model, val_t),
            "load_avg_1m": os.getloadavg()[0],
        }

    # Interleaved (fast, default, fast, default, ...) so that load from other work on this
    # shared machine hits both pipelines alike. Runs of one pipeline differ only in the seed of
    # batch order and dropout (same initial weights): their spread is the validation loss's
    # noise, against which the gap between the pipelines is to be read.
    for seed in range(args.seeds):
        run_fast(f"fast_seed{seed}", args.batch_size, seed)
        run_default(f"default_seed{seed}", seed)
    if args.big_batch:
        run_fast("fast_big_batch", args.big_batch, 0)

    def mean(kind: str, key: str) -> float:
        return sum(out[f"{kind}_seed{s}"][key] for s in range(args.seeds)) / args.seeds

    def spread(kind: str) -> float:
        losses = [out[f"{kind}_seed{s}"]["val_loss"] for s in range(args.seeds)]
        return max(losses) - min(losses)

    base = sum(out[f"default_seed{s}"]["windows_trained"] for s in range(args.seeds)) / sum(
        out[f"default_seed{s}"]["train_s"] for s in range(args.seeds)
    )
    fast_wps = sum(w_tr.n * args.epochs for _ in range(args.seeds)) / sum(
        out[f"fast_seed{s}"]["train_s"] for s in range(args.seeds)
    )
    fast_loss, default_loss = mean("fast", "val_loss"), mean("default", "val_loss")
    gap = fast_loss - default_loss
    out["summary"] = {
        "default_windows_per_s": base,
        "fast_windows_per_s": fast_wps,
        "speedup": fast_wps / base,
        "default_val_loss": default_loss,
        "fast_val_loss": fast_loss,
        "val_loss_gap": gap,
        "val_loss_gap_pct": 100 * gap / default_loss,
        "seed_spread": {"default": spread("default"), "fast": spread("fast")},
        # each fast run against the default run right after it, with the 1-min load averages
        # (2 cores; other work shares the machine, so a pair at unequal load is skewed)
        "pairs": [
            {
                "seed": s,
                "speedup": out[f"fast_seed{s}"]["windows_per_s"]
                / out[f"default_seed{s}"]["windows_per_s"],
                "load_fast": out[f"fast_seed{s}"]["load_avg_1m"],
                "load_default": out[f"default_seed{s}"]["load_avg_1m"],
            }
            for s in range(args.seeds)
        ],
    }
    if args.big_batch:
        big = out["fast_big_batch"]
        out["summary"]["big_batch_note"] = (
            f"batch {args.big_batch}: {big['windows_per_s'] / base:.2f}x, val loss "
            f"{big['val_loss']:.4f} - a different hyperparameter, not counted for the target"
        )
    out["targets"] = {
        # same model, same batch size and optimiser settings as the default pipeline
        "speedup_3x_met": fast_wps / base >= 3,
        "same_val_loss_within_2pct": abs(gap) <= 0.02 * default_loss,
        "gap_within_seed_spread": abs(gap) <= max(spread("default"), spread("fast")),
    }
    out["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("windows", "summary", "targets")}, indent=2))


if __name__ == "__main__":
    main()
