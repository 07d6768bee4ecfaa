"""The lean serving network equals the stock TFT to float rounding, and the runner keeps the
stock trace whenever the lean one is not safe to serve."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from models import dataset, fastpath, lean_network, registry, runners
from models.features import DEFAULT_SPEC, FeatureSpec
from models.schema import Dataset
from models.synthetic import cohort as synthetic_cohort


def _outputs(runner: runners.TorchRunner, w: dataset.Windows, spec: FeatureSpec) -> list:
    return runner(*runners.model_x(fastpath.ModelInputs.from_windows(w), spec))


def _assert_close_to_stock(model, w: dataset.Windows, spec: FeatureSpec) -> None:
    """The lean trace itself, on every window at once and in the runner's lean-sized calls."""
    stock = runners.TorchRunner(model, spec, trace=True)
    lean = runners.TorchRunner(model, spec, trace=True, lean=True)
    assert (stock.name, lean.name) == ("torchscript", "lean")
    ref = _outputs(stock, w, spec)
    x = runners.model_x(fastpath.ModelInputs.from_windows(w), spec)
    whole = lean._run(lean.lean_fn, *x)
    step = runners.LEAN_MAX_ROWS
    calls = [
        _outputs(lean, w.take(np.arange(a, min(a + step, w.n))), spec) for a in range(0, w.n, step)
    ]
    chunked = [np.concatenate(parts) for parts in zip(*calls, strict=True)]
    for got in (whole, chunked):
        assert [a.shape for a in got] == [a.shape for a in ref]
        pred, *weights = (float(np.abs(a - b).max()) for a, b in zip(got, ref, strict=True))
        assert pred <= 1e-4  # the fast path's bound vs predict(), which stock equals bit for bit
        assert max(weights) <= 1e-5  # selection weights and attention, in [0, 1]


def test_lean_equals_stock_on_the_tiny_model(
    trained: Path, cohort: Dataset, spec: FeatureSpec
) -> None:
    model, _ = registry.load(trained, spec)
    w = dataset.build_windows(cohort, spec)
    _assert_close_to_stock(model, w.take(np.arange(0, w.n, max(1, w.n // 300))), spec)


@pytest.mark.skipif(
    not (registry.DEFAULT_DIR / registry.META).exists(), reason="no shipped checkpoint"
)
def test_lean_equals_stock_on_the_shipped_model() -> None:
    """On real windows of a cohort with deteriorations, where glucose runs into the hundreds of
    mg/dL (float32's rounding step there is 1.5-3e-5, the scale of the bound)."""
    model, _ = registry.load(registry.DEFAULT_DIR, DEFAULT_SPEC)
    ds = synthetic_cohort(patients=12, days=1.5, seed=21)
    w = dataset.build_windows(ds, DEFAULT_SPEC)
    _assert_close_to_stock(model, w.take(np.arange(0, w.n, max(1, w.n // 400))), DEFAULT_SPEC)


def test_a_lean_network_that_disagrees_is_not_served(
    trained: Path, spec: FeatureSpec, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    model, _ = registry.load(trained, spec)
    real_forward = lean_network.LeanTFT.forward

    def off_by_a_little(self, *args):
        prediction, *rest = real_forward(self, *args)
        return (prediction + 2e-4, *rest)

    monkeypatch.setattr(lean_network.LeanTFT, "forward", off_by_a_little)
    with caplog.at_level(logging.WARNING, logger="models.runners"):
        runner = runners.TorchRunner(model, spec, trace=True, lean=True)
    assert runner.name == "torchscript"
    assert runner.lean_difference is not None
    assert 1e-4 < runner.lean_difference < 3e-4  # 2e-4, rounded at the outputs' magnitudes
    assert "serving the stock trace" in caplog.text
    # and the runner that is served is the stock trace, bit for bit
    x = runners._check_inputs(spec, 4)
    stock = runners.TorchRunner(model, spec, trace=True)
    for a, b in zip(runner(*x), stock(*x), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_network_lean_does_not_cover_keeps_the_stock_trace(
    trained: Path, spec: FeatureSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = registry.load(trained, spec)
    monkeypatch.setattr(lean_network, "leanable", lambda tft: False)
    assert runners.TorchRunner(model, spec, trace=True, lean=True).name == "torchscript"
    with pytest.raises(ValueError, match="all-real"):
        lean_network.LeanTFT(model)


def test_small_calls_run_lean_and_large_ones_the_stock_trace(
    trained: Path, spec: FeatureSpec
) -> None:
    """The lean network is faster only while its stacked intermediates stay small."""
    model, _ = registry.load(trained, spec)
    runner = runners.TorchRunner(model, spec, trace=True, lean=True)
    calls: list[int] = []
    lean_fn = runner.lean_fn

    def counting(*args):
        calls.append(int(args[0].shape[0]))
        return lean_fn(*args)

    runner.lean_fn = counting
    for n in (1, runners.LEAN_MAX_ROWS, runners.LEAN_MAX_ROWS + 1):
        out = runner(*runners._check_inputs(spec, n))
        assert out[0].shape[0] == n
    assert calls == [1, runners.LEAN_MAX_ROWS]


def test_forecaster_backends(trained: Path, spec: FeatureSpec) -> None:
    assert fastpath.Forecaster.load(trained, spec).backend == "lean"  # auto
    for name in fastpath.BACKENDS:
        assert fastpath.Forecaster.load(trained, spec, backend=name).backend == name


def test_the_trace_is_the_lean_module_at_any_batch_size(trained: Path, spec: FeatureSpec) -> None:
    """Traced on a batch of two, the frozen graph still runs the module's forward on other
    batch sizes (freezing folds the stacked weights, so float rounding may differ)."""
    model, _ = registry.load(trained, spec)
    lean = lean_network.LeanTFT(model).eval()
    traced = runners.TorchRunner(model, spec, trace=True, lean=True)
    assert traced.name == "lean"
    for n in (1, 5):
        enc, dec, scale = runners._check_inputs(spec, n)
        with torch.inference_mode():
            eager = lean(torch.from_numpy(enc), torch.from_numpy(dec), torch.from_numpy(scale))
        got = traced(enc, dec, scale)
        assert got[0].shape == (n, len(spec.targets), spec.decoder_steps, len(spec.quantiles))
        pred, *weights = (
            float(np.abs(a - b.numpy()).max()) for a, b in zip(got, eager, strict=True)
        )
        assert pred <= 1e-4
        assert max(weights) <= 1e-6
