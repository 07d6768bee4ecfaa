"""The TFT's forward on numpy inputs: frozen TorchScript, eager torch, or onnxruntime.

``model_x`` assembles the TFT's ``x`` exactly as pytorch-forecasting's dataloader does (fixed
target scaling, inputs in ``hparams.x_reals`` order, relative time index, full encoder length);
the runners run the network in eval mode on it. Their output matches
``TemporalFusionTransformer.predict()`` on the same windows to 1e-4
(``tests/models/test_fastpath.py``, every backend).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.features import FeatureSpec
from models.twin_inputs import ModelInputs

F32 = npt.NDArray[np.float32]


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
