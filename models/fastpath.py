"""The streaming fast path: twin states -> numpy inputs -> raw TFT forward (or ONNX) -> results.

No pandas and no ``TimeSeriesDataSet`` here. ``features_from_states`` reads the whole batch's
bins at once (``twin.windows.bins_ending_at``: the same values ``TwinState.window()`` reports,
bit for bit, without a Python loop per twin and bin) and each twin's newest statics, and calls
the same ``features`` functions the training windows were built with; ``Forecaster.run``
assembles the TFT's ``x`` exactly as pytorch-forecasting's dataloader does (fixed target
scaling, inputs in ``hparams.x_reals`` order, relative time index, full encoder length) and runs
the network in eval mode - traced to TorchScript and frozen by default (bit-identical to eager
torch, the Python overhead gone), eager torch, or onnxruntime when the checkpoint ships
``model.onnx``. The network's output (``Forecaster.raw``) matches
``TemporalFusionTransformer.predict()`` on the same windows to 1e-4
(``tests/models/test_fastpath.py``, every backend).

With ``workers=2`` the network runs a batch as two halves at once, on two threads with one torch
thread each (TorchScript and onnxruntime release the GIL while they compute): on two cores that
beat one call with two intra-op threads at every batch size measured (``var/bench/forecast.json``,
setting ``1x2``), because the TFT's ops are too small to split well inside one call.

Per forecast: quantile trajectories of every target - the network's, anchored on the last
observed values by the checkpoint's fitted ``anchor.Anchor`` (``Forecaster.calibrate``, the
same function evaluation applies) - risk of deterioration by horizon with a 10-90 % interval
(``risk.RiskHead``), and an explanation (``explain``), all from one forward.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import date
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models import explain as explain_mod
from models import news2 as news2_mod
from models import registry
from models import risk as risk_mod
from models.dataset import Windows
from models.errors import ModelsError, SpecMismatch
from models.features import (
    CONSCIOUSNESS_STALE_MS,
    LAB_STALE_MS,
    ORIGIN_FLAGS,
    PATIENT_FLAGS,
    FeatureSpec,
    StaticInputs,
    aggregate_steps,
    encoder_unknowns,
    fill_steps,
    known_inputs,
    static_inputs,
)
from models.registry import DEFAULT_DIR, Checkpoint
from twin.alerting.book import Driver, ForecastRisk
from twin.signals import SIGNALS, Signal
from twin.state import TwinState
from twin.windows import bins_ending_at

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ModelInputs:
    """A batch of forecast inputs (``Windows``' encoder side). All arrays share axis 0."""

    origin_ms: I64
    enc_unknown: F32  # [N, E, U]
    known: F32  # [N, E + D, K]
    statics: F32  # [N, S]
    last_obs: F32  # [N, T]
    news2_now: npt.NDArray[np.int16]

    @property
    def n(self) -> int:
        return int(self.origin_ms.shape[0])

    @classmethod
    def from_windows(cls, w: Windows) -> ModelInputs:
        return cls(w.origin_ms, w.enc_unknown, w.known, w.statics, w.last_obs, w.news2_now)

    @classmethod
    def concat(cls, parts: Sequence[ModelInputs]) -> ModelInputs:
        names = [f.name for f in fields(cls)]
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in names))

    def take(self, rows: npt.ArrayLike) -> ModelInputs:
        idx = np.asarray(rows)
        return ModelInputs(*(getattr(self, f.name)[idx] for f in fields(self)))


# ---- features from twin states ----------------------------------------------------------


def _age_years(birth_iso: str | None, at_ms: int) -> float:
    if not birth_iso:
        return math.nan
    born = date.fromisoformat(birth_iso)
    at = date.fromordinal(date(1970, 1, 1).toordinal() + at_ms // 86_400_000)
    return (at - born).days / 365.25


def _latest(st: TwinState, sig: Signal, at_ms: int, stale_ms: int) -> float:
    reading = st.latest.get(sig)
    if reading is None or reading[0] > at_ms or reading[0] < at_ms - stale_ms:
        return math.nan
    return float(reading[2])


def _on_oxygen(st: TwinState, at_ms: int) -> bool:
    best: tuple[int, bool] | None = None
    if st.oxygen is not None and st.oxygen[0] <= at_ms:
        best = (st.oxygen[0], bool(st.oxygen[2]))
    flow = st.latest.get(Signal.O2_FLOW)
    if flow is not None and flow[0] <= at_ms and (best is None or flow[0] > best[0]):
        best = (flow[0], flow[2] > 0)
    return False if best is None else best[1]


def states_statics(states: Sequence[TwinState], origin_ms: I64, spec: FeatureSpec) -> StaticInputs:
    at_ms = origin_ms.tolist()
    labs = [(lab, Signal(lab), LAB_STALE_MS[lab]) for lab in spec.labs]
    # One row of plain Python values per twin, turned into arrays once: assigning numpy
    # elements one at a time cost more than reading the twin.
    rows: list[tuple[float, ...]] = []
    for st, at in zip(states, at_ms, strict=True):
        com = st.comorbidities
        active = st.active_medications
        acvpu = _latest(st, Signal.CONSCIOUSNESS, at, CONSCIOUSNESS_STALE_MS)
        demo = st.demographics
        rows.append(
            (
                math.nan if demo is None else _age_years(demo[2], at),
                demo is not None and demo[3] == "female",
                "heart_failure" in com,
                "copd" in com,
                "type1_diabetes" in com or "type2_diabetes" in com,
                "ckd" in com,
                "hypertension" in com,
                "hypercapnic_respiratory_failure" in com or st.spo2_scale == 2,
                _on_oxygen(st, at),
                "antibiotic" in active,
                "diuretic" in active,
                "insulin" in active,
                math.isfinite(acvpu) and acvpu != 0,
                *(_latest(st, sig, at, stale) for _, sig, stale in labs),
            )
        )
    table = np.array(rows, dtype=np.float64).reshape(len(states), len(_STATIC_COLUMNS) + len(labs))
    col = {name: table[:, j] for j, name in enumerate(_STATIC_COLUMNS)}
    return StaticInputs(
        age=col["age"],
        flags={f: col[f] > 0 for f in (*spec.patient_flags, *spec.origin_flags)},
        labs={lab: table[:, len(_STATIC_COLUMNS) + j] for j, (lab, _, _) in enumerate(labs)},
    )


# The order states_statics builds each row in (tests/models/test_fastpath_features.py compares
# the result with the per-twin reference, so a reordered flag list fails there).
_STATIC_COLUMNS = ("age", *PATIENT_FLAGS, *ORIGIN_FLAGS)


def states_bins(
    states: Sequence[TwinState], origin_ms: I64, spec: FeatureSpec
) -> tuple[F32, npt.NDArray[np.bool_]]:
    """``[N, C, lookback * step_bins]`` bins ending at each origin, from the twins' windows.

    The last column is the origin's bin, or the watermark's bin for an origin after it; bins
    outside a twin's window are NaN (``twin.windows.bins_ending_at``, one batch at a time).
    """
    bin_ms = {s.bin_ms for s in states}
    if bin_ms - {spec.bin_ms}:
        raise SpecMismatch(f"twin bins are {sorted(bin_ms)} ms, the model's {spec.bin_ms} ms")
    watermark_bin = np.array([s.watermark_ms for s in states], np.int64) // spec.bin_ms
    last = np.minimum(np.asarray(origin_ms, np.int64) // spec.bin_ms, watermark_bin)
    return bins_ending_at(states, last, spec.lookback_steps * spec.step_bins)


def features_from_states(
    states: Sequence[TwinState], spec: FeatureSpec, at_ms: Sequence[int] | None = None
) -> ModelInputs:
    """Model inputs for forecasts made at ``at_ms`` (default: each twin's current bin start).

    ``at_ms`` is a bin boundary at or before the twin's watermark (a ``ForecastDue`` slot).
    """
    if at_ms is None:
        origin = np.array([(s.watermark_ms // s.bin_ms) * s.bin_ms for s in states], np.int64)
    else:
        origin = (np.asarray(at_ms, np.int64) // spec.bin_ms) * spec.bin_ms
    bins, mask = states_bins(states, origin, spec)
    steps, obs = aggregate_steps(bins, mask, spec)
    filled = fill_steps(steps, spec)
    enc = encoder_unknowns(filled, obs[..., spec.lookback_steps - spec.encoder_steps :], spec)
    sin = states_statics(states, origin, spec)
    ti = [spec.channel_index[t] for t in spec.targets]
    seen = np.isfinite(steps)
    lb = steps.shape[-1]
    last_idx = np.where(seen.any(-1), lb - 1 - np.argmax(seen[..., ::-1], axis=-1), 0)
    last = np.take_along_axis(steps, last_idx[..., None], axis=-1)[..., 0]
    last = np.where(seen.any(-1), last, np.nan)[:, ti].astype(np.float32)
    return ModelInputs(
        origin_ms=origin,
        enc_unknown=enc,
        known=known_inputs(origin, spec),
        statics=static_inputs(sin, spec),
        last_obs=last,
        news2_now=news2_now(bins, sin, spec),
    )


def news2_now(bins: F32, sin: StaticInputs, spec: FeatureSpec) -> npt.NDArray[np.int16]:
    """NEWS2 at the last bin: ``outcomes.news2_series(...)[:, -1]`` without the other bins.

    Each vital counts while it is fresh (``stale_after_s``), so only the newest observed bin
    within that many bins of the end can score; scoring every bin of the day only to keep the
    last one was the costliest step of building the features.
    """
    ci = spec.channel_index
    n = bins.shape[0]
    vit: dict[str, F32] = {}
    for name in ("heart_rate", "respiratory_rate", "spo2", "temperature", "systolic_bp"):
        limit = SIGNALS[Signal(name)].stale_after_s // spec.bin_s
        tail = bins[:, ci[name], max(bins.shape[-1] - 1 - limit, 0) :]
        seen = ~np.isnan(tail)
        newest = tail.shape[-1] - 1 - np.argmax(seen[:, ::-1], axis=-1)
        value = tail[np.arange(n), newest]
        vit[name] = np.where(seen.any(axis=-1), value, np.float32(np.nan))
    return news2_mod.news2_total(
        respiratory_rate=vit["respiratory_rate"],
        spo2=vit["spo2"],
        systolic_bp=vit["systolic_bp"],
        pulse=vit["heart_rate"],
        temperature=vit["temperature"],
        on_oxygen=sin.flags["on_oxygen"],
        not_alert=sin.flags["not_alert"],
        scale2=sin.flags["spo2_scale2"],
    )


# ---- the network: torch or onnxruntime ---------------------------------------------------


def model_x(inputs: ModelInputs, spec: FeatureSpec) -> tuple[F32, F32, npt.NDArray[np.float64]]:
    """(encoder_cont, decoder_cont, target_scale) as pytorch-forecasting's collate builds them."""
    n, e, d = inputs.n, spec.encoder_steps, spec.decoder_steps
    t = e + d
    rel = (np.arange(-e, d, dtype=np.float32) / np.float32(e))[None, :, None]
    x = np.concatenate(
        [
            np.broadcast_to(inputs.statics[:, None, :], (n, t, inputs.statics.shape[1])),
            inputs.known,
            np.broadcast_to(rel, (n, t, 1)),
            np.concatenate(
                [inputs.enc_unknown, np.zeros((n, d, inputs.enc_unknown.shape[2]), np.float32)],
                axis=1,
            ),
        ],
        axis=2,
    ).astype(np.float32)
    scale = np.array([spec.center_scale(tn) for tn in spec.targets], np.float64)
    return (
        np.ascontiguousarray(x[:, :e]),
        np.ascontiguousarray(x[:, e:]),
        np.ascontiguousarray(np.broadcast_to(scale, (n, *scale.shape))),
    )


OUTPUTS = ("prediction", "static_variables", "encoder_variables", "encoder_attention")


class _Exportable:
    """The TFT with a tensors-in, tensors-out signature (full encoder and decoder lengths).

    Without ``target_scale`` (the ONNX graph) it returns predictions in the normalised space:
    the identity target scale is used inside, and ``OnnxRunner`` de-normalises in float64 numpy
    exactly as ``TorchNormalizer`` does in torch (``p * scale + centre`` in float64, then
    float32). Done inside the graph, that step would round in float32 and leave only a few
    float32 ulps of margin against 1e-4 for glucose in the hundreds of mg/dL.
    """

    @staticmethod
    def wrap(model: Any, spec: FeatureSpec) -> Any:
        import torch

        e, d = spec.encoder_steps, spec.decoder_steps
        n_t = len(spec.targets)

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.tft = model

            def forward(
                self, encoder_cont: Any, decoder_cont: Any, target_scale: Any = None
            ) -> tuple[Any, ...]:
                ones = torch.ones_like(encoder_cont[:, 0, 0], dtype=torch.long)
                if target_scale is None:
                    zero = encoder_cont[:, 0, :1].to(torch.float64) * 0
                    identity = torch.cat([zero, zero + 1], dim=1)  # centre 0, scale 1
                    target_scale = torch.stack([identity] * n_t, dim=1)
                x = {
                    "encoder_cat": encoder_cont[:, :, :0].long(),
                    "decoder_cat": decoder_cont[:, :, :0].long(),
                    "encoder_cont": encoder_cont,
                    "decoder_cont": decoder_cont,
                    "encoder_lengths": ones * e,
                    "decoder_lengths": ones * d,
                    "target_scale": [target_scale[:, k] for k in range(target_scale.shape[1])],
                }
                out = self.tft(x)
                return (
                    torch.stack(out["prediction"], dim=1),
                    out["static_variables"],
                    out["encoder_variables"],
                    out["encoder_attention"],
                )

        w = Wrapped()
        w.eval()
        return w


class TorchRunner:
    """The network in torch: eager, or traced to TorchScript (``trace=True``).

    Tracing records the same kernels eager mode runs (measured: bit-identical outputs at batch
    sizes 1 to 1000) and drops the Python overhead of the TFT's dozens of small modules; the
    trace is then frozen (``torch.jit.freeze``), which removes the module lookups as well:
    about 4x faster than eager at batch 1, 2x at 64. The trace is valid because every fast-path batch has full
    encoder and decoder lengths - the only data-dependent branches in pytorch-forecasting's
    forward. It is made at load time (about a second); nothing traced is stored.
    """

    def __init__(self, model: Any, spec: FeatureSpec, *, trace: bool = False) -> None:
        import torch

        self.model = model
        self.model.eval()  # dropout off: train mode moves predictions by up to 2 bpm
        self.wrapped = _Exportable.wrap(model, spec)
        self.fn: Any = self.wrapped
        self.name = "torch"
        if trace:
            sample = model_x(_template_inputs(spec), spec)
            with _scripting(), torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the length checks become constants: see above
                args = tuple(torch.from_numpy(a) for a in sample)
                traced = torch.jit.trace(self.wrapped, args, check_trace=False)
                # Freezing inlines the parameters and submodule lookups into one graph: the
                # same kernels on the same tensors (bit-identical outputs), but 1.3-1.8x
                # faster per call on the TFT's many small modules at batch 1 to 64.
                self.fn = torch.jit.freeze(traced.eval())
            self.name = "torchscript"

    def __call__(self, enc: F32, dec: F32, scale: npt.NDArray[np.float64]) -> list[np.ndarray]:
        import torch

        # The profiling executor's shape specialisation is off: micro-batches vary in size, and
        # re-optimising per size made some calls slower, not faster (the plain interpreter
        # already removes the Python overhead).
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            outs = self.fn(torch.from_numpy(enc), torch.from_numpy(dec), torch.from_numpy(scale))
        return [o.numpy() for o in outs]


def _template_inputs(spec: FeatureSpec) -> ModelInputs:
    from models.network import template_windows

    return ModelInputs.from_windows(template_windows(spec, 2))


def _scripting() -> Any:
    """Lightning's context that lets a LightningModule be traced without a Trainer."""
    import contextlib

    try:
        from lightning.pytorch.core.module import _jit_is_scripting
    except ImportError:  # pragma: no cover - a lightning without it traces without it
        return contextlib.nullcontext()
    return _jit_is_scripting()


class OnnxRunner:
    """The network in onnxruntime, from a ``model.onnx`` file or the bytes of an export."""

    name = "onnx"

    def __init__(self, graph: Path | bytes, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = graph if isinstance(graph, bytes) else str(graph)
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])

    def __call__(self, enc: F32, dec: F32, scale: npt.NDArray[np.float64]) -> list[np.ndarray]:
        feed = {"encoder_cont": enc, "decoder_cont": dec}
        pred, *rest = self.session.run(list(OUTPUTS), feed)
        # TorchNormalizer's de-normalisation, in float64 then float32 (see _Exportable)
        full = pred.astype(np.float64) * scale[:, :, 1, None, None] + scale[:, :, 0, None, None]
        return [full.astype(np.float32), *rest]


def export_onnx(model: Any, spec: FeatureSpec, sample: ModelInputs) -> bytes:
    """The network as ONNX bytes (TorchScript exporter: ``dynamo=False``; needs ``onnx``)."""
    import io

    wrapped = _Exportable.wrap(model, spec)
    enc, dec, _ = model_x(sample, spec)
    buf = io.BytesIO()
    names = ["encoder_cont", "decoder_cont"]
    with warnings.catch_warnings():
        # Tracing warns about pytorch-forecasting's Python-side length checks; every exported
        # batch has full encoder and decoder lengths, so those branches are constant (and the
        # result is verified against torch at several batch sizes before it is shipped).
        warnings.simplefilter("ignore")
        _export(wrapped, enc, dec, buf, names)
    wrapped.eval()  # the exporter restores the module's previous mode: keep it in eval
    model.eval()
    return buf.getvalue()


def _export(wrapped: Any, enc: F32, dec: F32, buf: Any, names: list[str]) -> None:
    import torch

    torch.onnx.export(
        wrapped,
        (torch.from_numpy(enc), torch.from_numpy(dec)),
        buf,
        dynamo=False,
        input_names=names,
        output_names=list(OUTPUTS),
        dynamic_axes={n: {0: "batch"} for n in [*names, *OUTPUTS]},
    )


# ---- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastBatch:
    origin_ms: I64
    quantiles: F32  # [N, T, D, Q] in canonical units
    risk: np.ndarray  # [N, H]
    risk_low: np.ndarray
    risk_high: np.ndarray
    static_weights: F32
    encoder_weights: F32
    encoder_attention: F32

    @property
    def n(self) -> int:
        return int(self.origin_ms.shape[0])


@dataclass(frozen=True)
class PatientForecast:
    """One patient's forecast as plain data: what the runtime hands to sinks and alert rules."""

    patient_id: str
    at_ms: int
    model: str
    step_minutes: int
    targets: tuple[str, ...]
    quantile_levels: tuple[float, ...]
    quantile_array: np.ndarray  # [target, decoder step, quantile level], canonical units
    horizons_h: tuple[float, ...]
    risk: dict[float, float]
    risk_low: dict[float, float]
    risk_high: dict[float, float]
    explanation: explain_mod.Explanation

    @property
    def quantiles(self) -> dict[str, list[list[float]]]:
        """target -> [decoder step][quantile level] (built on demand: the hot path skips it)."""
        q = np.round(self.quantile_array.astype(np.float64), 3)
        return {t: q[k].tolist() for k, t in enumerate(self.targets)}

    def drivers(self) -> tuple[Driver, ...]:
        ex = self.explanation
        out = [
            Driver(feature=f"{g}:{v}", weight=w, detail=f"{g} variable selection weight")
            for g, v, w in ex.top
        ]
        out.append(
            Driver(
                feature="attention_peak",
                weight=ex.attention_peak_weight,
                detail=f"attended most to {ex.attention_peak_h:g} h before the forecast",
            )
        )
        return tuple(out)

    def to_forecast_risk(self) -> ForecastRisk:
        """The alert policy's view (``twin.alerting.ForecastRisk``)."""
        return ForecastRisk(
            made_at_ms=self.at_ms,
            risk={float(h): float(p) for h, p in self.risk.items()},
            model=self.model[:128],
            outcome="deterioration",
            explanation=self.drivers(),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "forecast",
            "patient_id": self.patient_id,
            "at_ms": self.at_ms,
            "model": self.model,
            "step_minutes": self.step_minutes,
            "quantile_levels": list(self.quantile_levels),
            "quantiles": self.quantiles,
            "risk": {str(h): p for h, p in self.risk.items()},
            "risk_low": {str(h): p for h, p in self.risk_low.items()},
            "risk_high": {str(h): p for h, p in self.risk_high.items()},
            "explanation": self.explanation.to_dict(),
        }


# Below this many rows a chunk's fixed cost (a thread hand-off, a smaller GEMM) outweighs what
# the second core adds: a batch is split only into chunks of at least this size.
MIN_CHUNK_ROWS = 8


class Forecaster:
    """A loaded checkpoint ready to forecast batches of twins.

    ``threads``: torch's intra-op threads (process-wide). ``workers``: how many row chunks of a
    batch the network runs at once, each on its own thread; pair ``workers=2`` with
    ``threads=1`` on two cores. Chunks agree with the whole batch to float rounding (GEMMs of
    another size may sum in another order): within the 1e-4 the fast path is held to.
    """

    def __init__(
        self,
        model: Any,
        checkpoint: Checkpoint,
        *,
        backend: str = "auto",
        threads: int | None = None,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ModelsError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        # workers - 1 helper threads: the calling thread runs the first chunk itself
        self._pool = (
            ThreadPoolExecutor(workers - 1, thread_name_prefix="forecast") if workers > 1 else None
        )
        self.model = model
        self.checkpoint = checkpoint
        self.spec = checkpoint.spec
        self.risk_head = checkpoint.risk
        self.anchor = checkpoint.anchor
        self.name = f"tft:{checkpoint.name}:{self.spec.hash()}"
        if threads:
            import torch

            torch.set_num_threads(threads)
        onnx_path = checkpoint.onnx_path
        if backend == "auto":
            backend = "torchscript"
        if backend == "onnx":
            # Only a shipped graph: training verifies it against torch before shipping it (an
            # unverified export of the shipped model differed from predict() by 1.2e-4).
            if onnx_path is None:
                raise ModelsError(f"{checkpoint.path} has no {registry.ONNX} for onnxruntime")
            self.runner: TorchRunner | OnnxRunner = OnnxRunner(onnx_path, threads)
        elif backend in ("torch", "torchscript"):
            self.runner = TorchRunner(model, self.spec, trace=backend == "torchscript")
        else:
            raise ModelsError(f"unknown backend {backend!r}: use auto, torchscript, torch or onnx")

    @classmethod
    def load(
        cls,
        path: str | Path = DEFAULT_DIR,
        spec: FeatureSpec | None = None,
        *,
        backend: str = "auto",
        threads: int | None = None,
        workers: int = 1,
    ) -> Forecaster:
        model, ckpt = registry.load(path, spec)
        ckpt.spec.check_twin_compatible()
        return cls(model, ckpt, backend=backend, threads=threads, workers=workers)

    @property
    def backend(self) -> str:
        return self.runner.name

    def raw(self, inputs: ModelInputs) -> list[np.ndarray]:
        """(prediction [N,T,D,Q], static weights, encoder weights, attention)."""
        spans = self._spans(inputs.n)
        if len(spans) <= 1:
            return self.runner(*model_x(inputs, self.spec))
        return self._network([partial(inputs.take, np.arange(a, b)) for a, b in spans])

    def _spans(self, n: int) -> list[tuple[int, int]]:
        """The row chunks a batch of ``n`` runs as: one per worker, each >= MIN_CHUNK_ROWS."""
        parts = min(self.workers, n // MIN_CHUNK_ROWS) if self._pool is not None else 1
        cuts = np.linspace(0, n, max(parts, 1) + 1).astype(int).tolist()
        return list(pairwise(cuts))

    def _network(self, chunks: Sequence[Callable[[], ModelInputs]]) -> list[np.ndarray]:
        """The network over consecutive chunks, each made when its turn comes: every chunk but
        the last goes to a worker as soon as it is made (so making the next one overlaps it),
        the last runs on this thread."""
        assert self._pool is not None
        pending: list[Future[list[np.ndarray]]] = []
        for make in chunks[:-1]:
            pending.append(self._pool.submit(self.runner, *model_x(make(), self.spec)))
        mine = self.runner(*model_x(chunks[-1](), self.spec))
        outs = [f.result() for f in pending]
        return [np.concatenate(parts) for parts in zip(*outs, mine, strict=True)]

    def close(self) -> None:
        """Stop the worker threads (the Forecaster still runs, on the calling thread alone)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def calibrate(self, quantiles: F32, last_obs: F32) -> F32:
        """The post-network anchoring on persistence (``models.anchor``), fitted on validation
        patients at training; the network's output as is for a checkpoint without one."""
        return quantiles if self.anchor is None else self.anchor.apply(quantiles, last_obs)

    def run(self, inputs: ModelInputs) -> ForecastBatch:
        return self._finish(inputs, self.raw(inputs))

    def _finish(self, inputs: ModelInputs, raw_out: list[np.ndarray]) -> ForecastBatch:
        """Anchor the network's output and score the risk: everything after the forward."""
        raw, sw, ew, att = raw_out
        pred = self.calibrate(raw, inputs.last_obs)
        spec = self.spec
        ctx = risk_mod.RiskContext.of(inputs, spec)
        if self.risk_head is not None:
            feats = risk_mod.features(pred, ctx, spec)
            p, lo, hi = self.risk_head.predict(feats)
        else:
            p = lo = hi = np.full((inputs.n, len(spec.risk_horizons_h)), np.nan)
        return ForecastBatch(inputs.origin_ms, pred, p, lo, hi, sw, ew, att)

    # ---- models.protocol.ForecasterProtocol ----

    def fit(self, dataset: Any) -> Forecaster:
        """Retrain on ``dataset`` with the default config, keeping this spec (no files written)."""
        from models import training

        result = training.train(dataset, self.spec, training.TrainConfig(progress=False), None)
        # the new network's own anchor and risk head, not this checkpoint's
        return Forecaster(result.model, result.checkpoint or self.checkpoint, backend="torch")

    def forecast(self, inputs: ModelInputs) -> ForecastBatch:
        return self.run(inputs)

    def explain(self, batch: ForecastBatch) -> list[explain_mod.Explanation]:
        return explain_mod.explain(
            batch.static_weights, batch.encoder_weights, batch.encoder_attention, self.spec
        )

    def results(self, batch: ForecastBatch, patient_ids: Sequence[str]) -> list[PatientForecast]:
        spec = self.spec
        exps = self.explain(batch)
        hs = tuple(float(h) for h in spec.risk_horizons_h)
        step_minutes = spec.step_s // 60
        # Rows as Python floats in one call each: indexing numpy scalars per patient and
        # horizon cost more than building the records.
        rows = zip(
            patient_ids,
            batch.origin_ms.tolist(),
            batch.risk.tolist(),
            batch.risk_low.tolist(),
            batch.risk_high.tolist(),
            exps,
            strict=True,
        )
        return [
            PatientForecast(
                patient_id=pid,
                at_ms=at,
                model=self.name,
                step_minutes=step_minutes,
                targets=spec.targets,
                quantile_levels=spec.quantiles,
                quantile_array=batch.quantiles[i],
                horizons_h=hs,
                risk=dict(zip(hs, risk, strict=True)),
                risk_low=dict(zip(hs, low, strict=True)),
                risk_high=dict(zip(hs, high, strict=True)),
                explanation=ex,
            )
            for i, (pid, at, risk, low, high, ex) in enumerate(rows)
        ]

    def forecast_states(
        self, states: Sequence[TwinState], at_ms: Sequence[int] | None = None
    ) -> list[PatientForecast]:
        ids = [s.patient_id for s in states]
        spans = self._spans(len(states))
        if len(spans) <= 1:
            inputs = features_from_states(states, self.spec, at_ms)
            return self.results(self.run(inputs), ids)
        # Chunk by chunk: a chunk's features (Python, holding the GIL) are built while the
        # previous chunk's network runs on a worker (torch releases the GIL).
        at = None if at_ms is None else list(at_ms)
        chunks: list[ModelInputs] = []

        def build(a: int, b: int) -> ModelInputs:
            chunk = features_from_states(states[a:b], self.spec, None if at is None else at[a:b])
            chunks.append(chunk)
            return chunk

        raw = self._network([partial(build, a, b) for a, b in spans])
        return self.results(self._finish(ModelInputs.concat(chunks), raw), ids)
