"""Training the TFT: seeded, early-stopped, with a progress bar, written as a checkpoint.

Patients (never windows) are split into train / validation / calibration sets. The network is
fitted on the training windows through the cheap pipeline (``batches.WindowTensors``) with
Adam, gradient clipping and a halving learning rate on plateaus, keeping the weights of the
best validation loss and stopping after ``patience`` epochs without improvement (or at
``max_minutes``). Once batches cost nothing, a step of our small TFT is dominated by per-tensor
overhead, so the loop runs the same network and update in fewer, larger ops (``models.step``):
Adam and clipping over one flat parameter buffer, and the variable selection networks' ~30
per-variable GRNs as one batched matmul each. Both are exact rewrites
(``tests/models/test_training_step.py``) and leave the model and checkpoint as before.
After the network: the anchor on persistence (``models.anchor``) is fitted on the validation
patients' forecasts; the risk heads on the anchored forecasts and observed history of every
patient's eligible windows (training patients included: with validation and calibration
patients alone they learnt from 7 deteriorations and ranked worse, see ``risk_designs``) and,
when given, of a separate *risk cohort* (``risk_ds``: more deteriorations for the head to learn
from, through the network already trained - it costs forecasts, not training); their design
comparison cross-fitted on the patients whose forecasts the network never trained on
(validation, calibration and the risk cohort); and the checkpoint is written with its metadata
(``registry``).

``seed`` fixes the split, the initial weights, the batch order and the bootstrap: the same
dataset, config and thread count give the same weights (``torch.use_deterministic_algorithms``
is not needed on CPU for these ops).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models import anchor as anchor_mod
from models import evaluation, network, registry
from models import risk as risk_mod
from models.batches import WindowTensors
from models.dataset import Windows, build_windows
from models.errors import ModelsError
from models.fastpath import Forecaster
from models.features import FeatureSpec
from models.network import NetConfig
from models.runners import export_onnx
from models.schema import Dataset
from models.step import FlatAdam, stacked_variable_selection
from models.twin_inputs import ModelInputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch_size: int = 128
    patience: int = 3
    seed: int = 7
    val_fraction: float = 0.15
    calib_fraction: float = 0.15
    max_minutes: float | None = None
    threads: int = 2
    grad_clip: float = 0.5
    plateau_patience: int = 0  # epochs without improvement before the learning rate halves
    stride_steps: int = 1
    n_boot: int = 20
    onnx: bool = True
    progress: bool = True
    net: NetConfig = field(default_factory=NetConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    model: Any
    path: Path | None
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    seconds: float
    checkpoint: registry.Checkpoint | None = None  # the in-memory one: risk head, anchor


def split_patients(
    ids: list[str], seed: int, val_fraction: float, calib_fraction: float
) -> tuple[set[str], set[str], set[str]]:
    rng = np.random.default_rng(seed)
    order = [ids[i] for i in rng.permutation(len(ids))]
    n_val = max(1, round(len(ids) * val_fraction))
    n_cal = max(1, round(len(ids) * calib_fraction))
    if len(ids) < n_val + n_cal + 1:
        raise ModelsError(f"{len(ids)} patients are too few to split into train/val/calibration")
    return set(order[n_val + n_cal :]), set(order[:n_val]), set(order[n_val : n_val + n_cal])


def rows_of(w: Windows, patients: set[str]) -> np.ndarray:
    keep = np.array([p in patients for p in w.patient_ids])
    return np.nonzero(keep[w.patient])[0]


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def validation_loss(model: Any, tensors: WindowTensors, batch_size: int = 1024) -> float:
    """The loss over the whole set at once (the same number whichever pipeline trained it)."""
    was = model.training
    model.eval()
    preds: list[list[torch.Tensor]] = []
    targets: list[list[torch.Tensor]] = []
    weights: list[torch.Tensor] = []
    with torch.inference_mode():
        for x, (y, w) in tensors.batches(batch_size):
            preds.append(model(x)["prediction"])
            targets.append(y)
            weights.append(w)
    model.train(was)
    if not preds:
        return math.nan
    n_t = len(preds[0])
    pred = [torch.cat([p[k] for p in preds]) for k in range(n_t)]
    targ = [torch.cat([t[k] for t in targets]) for k in range(n_t)]
    return float(model.loss(pred, (targ, torch.cat(weights))))


def fit_network(
    model: Any,
    train: WindowTensors,
    val: WindowTensors,
    cfg: TrainConfig,
    deadline: float | None = None,
) -> list[dict[str, float]]:
    """The training loop; leaves ``model`` with its best validation weights, in eval mode."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = FlatAdam(model, cfg.net.learning_rate, cfg.grad_clip)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=0.5, patience=cfg.plateau_patience
    )
    best, best_state, bad = math.inf, _copy_state(model), 0
    history: list[dict[str, float]] = []
    try:
        with stacked_variable_selection(model):
            for epoch in range(cfg.epochs):
                model.train()
                t0 = time.perf_counter()
                total = torch.zeros((), dtype=torch.float64)
                seen = 0
                bar = tqdm(
                    total=train.n,
                    desc=f"epoch {epoch + 1}/{cfg.epochs}",
                    unit="win",
                    disable=not cfg.progress,
                    leave=False,
                )
                for x, y in train.batches(cfg.batch_size, shuffle=True, generator=gen):
                    out = model(x)
                    loss = model.loss(out["prediction"], y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    n = int(y[1].shape[0])
                    total += loss.detach() * n
                    seen += n
                    if cfg.progress:
                        bar.update(n)
                        bar.set_postfix(loss=f"{float(total) / seen:.4f}")
                bar.close()
                secs = time.perf_counter() - t0
                val_loss = validation_loss(model, val)
                sched.step(val_loss)
                train_loss = float(total) / max(seen, 1)
                history.append(
                    {
                        "epoch": epoch + 1,
                        "train_loss": train_loss,
                        "val_loss": val_loss,
                        "seconds": secs,
                        "windows_per_s": seen / secs if secs > 0 else math.nan,
                    }
                )
                log.info(
                    "epoch %d: train %.4f val %.4f (%.0f windows/s)",
                    epoch + 1,
                    train_loss,
                    val_loss,
                    seen / max(secs, 1e-9),
                )
                if val_loss < best - 1e-4:
                    best, best_state, bad = val_loss, _copy_state(model), 0
                else:
                    bad += 1
                    if bad >= cfg.patience:
                        break
                if deadline is not None and time.monotonic() >= deadline:
                    log.warning("stopping at the time limit after epoch %d", epoch + 1)
                    break
    finally:
        opt.release()
    model.load_state_dict(best_state)
    model.eval()
    return history


def _copy_state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def predict_quantiles(
    forecaster: Forecaster, w: Windows, batch: int = 2048, *, raw: bool = False
) -> np.ndarray:
    """``[N, T, D, Q]`` quantiles of every window, anchored as the runtime serves them (or the
    network's own with ``raw``)."""
    inputs = ModelInputs.from_windows(w)
    parts = []
    for a in range(0, w.n, batch):
        part = inputs.take(np.arange(a, min(a + batch, w.n)))
        q = forecaster.raw(part)[0]
        parts.append(q if raw else forecaster.calibrate(q, part.last_obs))
    return np.concatenate(parts) if parts else np.zeros((0,))


def fit_risk_heads(
    q: np.ndarray, w: Windows, spec: FeatureSpec, cfg: TrainConfig
) -> dict[str, risk_mod.RiskHead]:
    """The TFT head and the persistence-baseline head, on the eligible windows of ``w``.

    The baseline is only ever ranked (``evaluation``), so it gets no bootstrap refits: with a
    risk cohort those cost the training command ~15 s for nothing.
    """
    ok = w.eligible
    ctx = risk_mod.RiskContext.of(w.take(ok), spec)
    groups = w.patient[ok]
    labels = w.labels[ok]
    heads = {}
    for kind, quant in (
        ("tft_quantiles", q[ok]),
        ("persistence", risk_mod.persistence_quantiles(ctx, spec)),
    ):
        feats = risk_mod.features(quant, ctx, spec)
        n_boot = cfg.n_boot if kind == "tft_quantiles" else 0
        heads[kind] = risk_mod.fit(
            feats, labels, groups, spec, n_boot=n_boot, seed=cfg.seed, kind=kind
        )
    return heads


def train(
    ds: Dataset,
    spec: FeatureSpec,
    cfg: TrainConfig,
    out_dir: str | Path | None,
    *,
    name: str = "default",
    source: dict[str, Any] | None = None,
    risk_ds: Dataset | None = None,
) -> TrainResult:
    """Fit the TFT and its risk head on ``ds``; write a checkpoint to ``out_dir`` if given.

    ``risk_ds``: another cohort of the same case mix whose eligible windows the risk heads are
    also fitted on (never the network or the anchor).
    """
    t_start = time.monotonic()
    deadline = None if cfg.max_minutes is None else t_start + 60 * cfg.max_minutes
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    windows = build_windows(ds, spec, stride_steps=cfg.stride_steps)
    tr_ids, va_ids, ca_ids = split_patients(
        ds.patient_ids, cfg.seed, cfg.val_fraction, cfg.calib_fraction
    )
    w_tr, w_va, w_ca = (windows.take(rows_of(windows, s)) for s in (tr_ids, va_ids, ca_ids))
    if min(w_tr.n, w_va.n, w_ca.n) == 0:
        raise ModelsError("a split has no windows: more patients or longer stays are needed")
    log.info("windows: %d train, %d val, %d calibration", w_tr.n, w_va.n, w_ca.n)
    seed_everything(cfg.seed)
    model = network.build(spec, cfg.net)
    history = fit_network(
        model, WindowTensors(w_tr, spec), WindowTensors(w_va, spec), cfg, deadline
    )
    ckpt = registry.Checkpoint(Path(out_dir or "."), spec, cfg.net, None, {"name": name})
    net_va = predict_quantiles(Forecaster(model, ckpt, backend="torch"), w_va, raw=True)
    anchor = anchor_mod.fit(net_va, w_va.last_obs, w_va.dec_targets, spec)
    ckpt = replace(ckpt, anchor=anchor)
    fc = Forecaster(model, ckpt, backend="torch")
    q_va = fc.calibrate(net_va, w_va.last_obs)
    # Risk heads: on every patient's anchored forecasts and history. The design comparison is
    # cross-fitted and scored on the validation and calibration patients only (the network
    # never trained on them; early stopping only read the validation loss).
    w_all = Windows.concat([w_tr, w_va, w_ca])
    q_all = np.concatenate([predict_quantiles(fc, w_tr), q_va, predict_quantiles(fc, w_ca)])
    held_out = np.arange(w_all.n) >= w_tr.n
    from_training = np.ones(w_all.n, bool)
    risk_data: dict[str, Any] = {}
    if risk_ds is not None:
        w_risk = build_windows(risk_ds, spec, stride_steps=cfg.stride_steps)
        w_risk = w_risk.take(w_risk.eligible)  # the only windows a risk head reads
        log.info("risk cohort: %d eligible windows", w_risk.n)
        q_all = np.concatenate([q_all, predict_quantiles(fc, w_risk)])
        w_all = Windows.merge([w_all, w_risk])
        held_out = np.r_[held_out, np.ones(w_risk.n, bool)]
        from_training = np.r_[from_training, np.zeros(w_risk.n, bool)]
        risk_data = {
            "fingerprint": risk_ds.fingerprint(),
            "patients": len(risk_ds.patient_ids),
            "eligible_windows": w_risk.n,
        }
    design = evaluation.risk_designs(
        q_all, w_all, held_out, spec, training_cohort=from_training, seed=cfg.seed
    )
    heads = fit_risk_heads(q_all, w_all, spec, cfg)
    metrics = {
        "val_loss": min(h["val_loss"] for h in history),
        "forecast": evaluation.forecast_quality(q_va, w_va, spec, network=net_va),
        "risk_design": design,
    }
    seconds = time.monotonic() - t_start
    onnx_bytes = None
    if cfg.onnx:
        onnx_bytes = _try_onnx(model, spec, w_va)
    path = None
    if out_dir is not None:
        extra = {
            "name": name,
            "data": {
                "fingerprint": ds.fingerprint(),
                "patients": {"train": len(tr_ids), "val": len(va_ids), "calib": len(ca_ids)},
                "windows": {"train": w_tr.n, "val": w_va.n, "calib": w_ca.n},
                "source": source or {},
                "risk_cohort": risk_data,
            },
            "training": {
                **cfg.to_dict(),
                "seconds": round(seconds, 1),
                "epochs_run": len(history),
                "history": history,
            },
            "metrics": metrics,
            "risk_persistence": heads["persistence"].to_dict(),
        }
        path = registry.save(
            out_dir, model, spec, cfg.net, heads["tft_quantiles"], extra, onnx_bytes, anchor
        )
    meta = {**ckpt.metadata, "risk_persistence": heads["persistence"].to_dict()}
    ckpt = replace(ckpt, risk=heads["tft_quantiles"], metadata=meta)
    return TrainResult(model, path, metrics, history, seconds, ckpt)


def _try_onnx(model: Any, spec: FeatureSpec, w: Windows) -> bytes | None:
    """Export and verify against torch; None (torch backend) if ``onnx`` is absent or differs."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        log.warning("package 'onnx' is not installed: no model.onnx; the torch backend is used")
        return None
    import tempfile

    from models.runners import OnnxRunner, TorchRunner, model_x

    sample = ModelInputs.from_windows(w.take(np.arange(min(w.n, 256))))
    data = export_onnx(model, spec, sample)
    torch_run = TorchRunner(model, spec)
    diff = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "m.onnx"
        p.write_bytes(data)
        onnx_run = OnnxRunner(p)
        for n in (1, 3, sample.n):  # other batch sizes than the exported one, too
            part = sample.take(np.arange(min(n, sample.n)))
            a = onnx_run(*model_x(part, spec))
            b = torch_run(*model_x(part, spec))
            diff = max(diff, *(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)))
    if diff > 1e-4:
        log.warning("ONNX export differs from torch by %.2g: not shipping it", diff)
        return None
    return data
