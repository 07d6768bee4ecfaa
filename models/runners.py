"""The TFT's forward on numpy inputs: frozen TorchScript, eager torch, or onnxruntime.

``model_x`` assembles the TFT's ``x`` exactly as pytorch-forecasting's dataloader does (fixed
target scaling, inputs in ``hparams.x_reals`` order, relative time index, full encoder length);
the runners run the network in eval mode on it. Their output matches
``TemporalFusionTransformer.predict()`` on the same windows to 1e-4
(``tests/models/test_fastpath.py``, every backend).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.features import FeatureSpec
from models.twin_inputs import ModelInputs

F32 = npt.NDArray[np.float32]

log = logging.getLogger(__name__)

# Rows up to which a call runs the lean network (measured on the shipped model, one thread,
# lean / stock time: 0.54 at 1 row, 0.73 at 16, 0.83 at 32, 0.98 at 64, 1.04 at 128).
LEAN_MAX_ROWS = 64


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
    """The network in torch: eager, or traced to TorchScript (``trace=True``), optionally lean.

    Tracing records the same kernels eager mode runs (measured: bit-identical outputs at batch
    sizes 1 to 1000) and drops the Python overhead of the TFT's dozens of small modules; the
    trace is then frozen (``torch.jit.freeze``), which removes the module lookups as well:
    about 4x faster than eager at batch 1, 2x at 64. The trace is valid because every fast-path
    batch has full encoder and decoder lengths - the only data-dependent branches in
    pytorch-forecasting's forward. It is made at load time (about a second); nothing traced is
    stored.

    ``lean=True`` also traces ``models.lean_network.LeanTFT``: the same parameters with the
    variable selection stacked, equal to the stock network bit for bit or within a float32
    rounding step or two (``models.lean_network``). Its ops are fewer and larger: half the
    fixed cost of a call, 17-27 % less time at 16-32 rows, even at 64, and slower above (at
    1,000 rows 1.2x the stock trace: the stacked intermediates outgrow the cache). So calls of
    up to ``LEAN_MAX_ROWS`` rows run lean and larger ones the stock trace. The lean trace is run
    against the stock one on check windows when it is made, and is not used (with a warning)
    if they differ by more than ``LEAN_TOLERANCE`` or the network is not one ``LeanTFT``
    covers.
    """

    def __init__(
        self, model: Any, spec: FeatureSpec, *, trace: bool = False, lean: bool = False
    ) -> None:
        self.model = model
        self.model.eval()  # dropout off: train mode moves predictions by up to 2 bpm
        self.wrapped = _Exportable.wrap(model, spec)
        self.fn: Any = self.wrapped
        self.lean_fn: Any = None  # the lean trace, for calls of up to LEAN_MAX_ROWS rows
        self.name = "torch"
        self.lean_difference: float | None = None  # lean vs stock on the check windows
        if trace:
            self.fn = _trace(self.wrapped, model_x(_template_inputs(spec), spec))
            self.name = "torchscript"
        if trace and lean:
            self._try_lean(spec)

    def _try_lean(self, spec: FeatureSpec) -> None:
        from models.lean_network import LEAN_TOLERANCE, LeanTFT, leanable

        if not leanable(self.model):
            log.warning("the lean network does not cover this TFT: serving the stock trace")
            return
        lean = _trace(LeanTFT(self.model).eval(), model_x(_template_inputs(spec), spec))
        check = _check_inputs(spec)
        stock_out, lean_out = self._run(self.fn, *check), self._run(lean, *check)
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(stock_out, lean_out, strict=True))
        self.lean_difference = diff
        if not diff <= LEAN_TOLERANCE:  # NaN fails too
            log.warning(
                "the lean network differs from the stock one by %.3g (> %g): serving the stock "
                "trace",
                diff,
                LEAN_TOLERANCE,
            )
            return
        self.lean_fn = lean
        self.name = "lean"

    def __call__(self, enc: F32, dec: F32, scale: npt.NDArray[np.float64]) -> list[np.ndarray]:
        small = self.lean_fn is not None and enc.shape[0] <= LEAN_MAX_ROWS
        return self._run(self.lean_fn if small else self.fn, enc, dec, scale)

    @staticmethod
    def _run(fn: Any, enc: F32, dec: F32, scale: npt.NDArray[np.float64]) -> list[np.ndarray]:
        import torch

        # The profiling executor's shape specialisation is off: micro-batches vary in size, and
        # re-optimising per size made some calls slower, not faster (the plain interpreter
        # already removes the Python overhead).
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            outs = fn(torch.from_numpy(enc), torch.from_numpy(dec), torch.from_numpy(scale))
        return [o.numpy() for o in outs]


def _trace(module: Any, sample: tuple[np.ndarray, ...]) -> Any:
    """``module`` traced on ``sample`` and frozen."""
    import torch

    with _scripting(), torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the length checks become constants: see TorchRunner
        args = tuple(torch.from_numpy(a) for a in sample)
        traced = torch.jit.trace(module, args, check_trace=False)
        # Freezing inlines the parameters and submodule lookups into one graph: the same
        # kernels on the same tensors (bit-identical outputs), but 1.3-1.8x faster per call
        # on the TFT's many small modules at batch 1 to 64. optimize_numerics=False: no pass
        # that may fold constants into other arithmetic runs.
        return torch.jit.freeze(traced.eval(), optimize_numerics=False)


def _check_inputs(spec: FeatureSpec, n: int = 16) -> tuple[F32, F32, npt.NDArray[np.float64]]:
    """Inputs that exercise every weight: default windows plus unit noise (fixed seed), in the
    normalised space the network reads, so predictions stay in each target's usual range."""
    enc, dec, scale = model_x(_template_inputs(spec, n), spec)
    rng = np.random.default_rng(0)
    noisy = [(a + rng.standard_normal(a.shape)).astype(np.float32) for a in (enc, dec)]
    return noisy[0], noisy[1], scale


def _template_inputs(spec: FeatureSpec, n: int = 2) -> ModelInputs:
    from models.network import template_windows

    return ModelInputs.from_windows(template_windows(spec, n))


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
