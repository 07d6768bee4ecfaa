"""The streaming fast path: twin states -> numpy inputs -> TFT forward -> forecasts and risk.

``Forecaster`` ties the steps together: inputs from twin states (``models.twin_inputs``), the
network (``models.runners``, one of ``BACKENDS`` or onnxruntime: by default ``lean``, the
frozen TorchScript trace of ``models.lean_network.LeanTFT``, equal to ``predict()`` bit for
bit or within a float32 rounding step or two, checked against the stock network when it is
loaded; ``torchscript``, the stock network traced, bit-identical at every size;
``torch``, eager; ``onnx`` when the checkpoint ships ``model.onnx``), then the anchor, the risk
head and the explanation records. Those modules' names are re-exported here, as the fast
path's API.

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

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import pairwise, repeat
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models import explain as explain_mod
from models import registry
from models import risk as risk_mod
from models.errors import ModelsError
from models.features import FeatureSpec
from models.records import build_frozen
from models.registry import DEFAULT_DIR, Checkpoint
from models.runners import OnnxRunner, TorchRunner, export_onnx, model_x
from models.twin_inputs import (
    ModelInputs,
    features_from_states,
    news2_now,
    states_bins,
    states_statics,
)
from twin.alerting.book import Driver, ForecastRisk
from twin.state import TwinState

__all__ = [
    "BACKENDS",
    "ForecastBatch",
    "Forecaster",
    "ModelInputs",
    "OnnxRunner",
    "PatientForecast",
    "TorchRunner",
    "export_onnx",
    "features_from_states",
    "model_x",
    "news2_now",
    "states_bins",
    "states_statics",
]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# The torch backends, fastest first ("auto" is the first; "onnx" needs a shipped graph)
BACKENDS = ("lean", "torchscript", "torch")


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
# From this many rows on, forecast_states builds each chunk's features while the previous
# chunk's network runs. Below it, one feature pass over the whole batch costs less than one
# per chunk, and the chunks' networks then start together: measured with two workers, 7.3 vs
# 7.7 ms at 64 rows, even at 128, and 94 vs 88 ms at 1,000 (where the features take 23 ms).
PIPELINE_MIN_ROWS = 256


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
            backend = "lean"
        if backend == "onnx":
            # Only a shipped graph: training verifies it against torch before shipping it (an
            # unverified export of the shipped model differed from predict() by 1.2e-4).
            if onnx_path is None:
                raise ModelsError(f"{checkpoint.path} has no {registry.ONNX} for onnxruntime")
            self.runner: TorchRunner | OnnxRunner = OnnxRunner(onnx_path, threads)
        elif backend in BACKENDS:
            trace = backend != "torch"
            self.runner = TorchRunner(model, self.spec, trace=trace, lean=backend == "lean")
        else:
            raise ModelsError(
                f"unknown backend {backend!r}: use auto, {', '.join(BACKENDS)} or onnx"
            )

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
        # horizon cost more than building the records. The horizons are checked once here,
        # not by a strict zip per patient and array.
        for name in ("risk", "risk_low", "risk_high"):
            if getattr(batch, name).shape[1:] != (len(hs),):
                raise ValueError(f"{name} has {getattr(batch, name).shape[1:]} horizons, not {hs}")
        # Per-horizon dicts built by map over rows (C-level loops, no Python step per patient).
        risks = [
            map(dict, map(zip, repeat(hs), getattr(batch, name).tolist()))
            for name in ("risk", "risk_low", "risk_high")
        ]
        model, targets, levels = self.name, spec.targets, spec.quantiles
        rows = zip(
            patient_ids,
            batch.origin_ms.tolist(),
            batch.quantiles,  # iterating yields the row views batch.quantiles[i] would
            *risks,
            exps,
            strict=True,
        )
        return [
            build_frozen(
                PatientForecast,
                {
                    "patient_id": pid,
                    "at_ms": at,
                    "model": model,
                    "step_minutes": step_minutes,
                    "targets": targets,
                    "quantile_levels": levels,
                    "quantile_array": q,
                    "horizons_h": hs,
                    "risk": risk,
                    "risk_low": low,
                    "risk_high": high,
                    "explanation": ex,
                },
            )
            for pid, at, q, risk, low, high, ex in rows
        ]

    def forecast_states(
        self, states: Sequence[TwinState], at_ms: Sequence[int] | None = None
    ) -> list[PatientForecast]:
        ids = [s.patient_id for s in states]
        spans = self._spans(len(states))
        if len(spans) <= 1 or len(states) < PIPELINE_MIN_ROWS:
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
