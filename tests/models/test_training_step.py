"""The cheap training step computes what the stock one does: same loss, gradients and updates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_NET
from pytorch_forecasting.metrics import QuantileLoss

from models import dataset, network, training
from models import step as step_ops
from models.batches import Batch, WindowTensors
from models.features import FeatureSpec
from models.schema import Dataset


@pytest.fixture(scope="module")
def tensors(cohort: Dataset, spec: FeatureSpec) -> WindowTensors:
    return WindowTensors(dataset.build_windows(cohort, spec).take(np.arange(0, 840, 3)), spec)


def _model(spec: FeatureSpec, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    model = network.build(spec, TINY_NET)
    with torch.no_grad():  # away from the initial zeros/ones so every gate and norm matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


def _loss_and_grads(model: Any, batch: Batch) -> tuple[Any, float, dict[str, torch.Tensor]]:
    x, y = batch
    model.zero_grad(set_to_none=True)
    out = model(x)
    loss = model.loss(out["prediction"], y)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, float(loss.detach()), grads


def test_stacked_variable_selection_matches_the_stock_forward(
    tensors: WindowTensors, spec: FeatureSpec
) -> None:
    model = _model(spec)
    model.eval()  # no dropout: the two must then agree to float rounding
    batch = tensors.batch(torch.arange(64))
    ref, ref_loss, ref_grads = _loss_and_grads(model, batch)
    with step_ops.stacked_variable_selection(model):
        assert "forward" in vars(model.encoder_variable_selection)
        out, loss, grads = _loss_and_grads(model, batch)
    assert "forward" not in vars(model.encoder_variable_selection)  # restored afterwards
    for a, b in zip(ref["prediction"], out["prediction"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-4)
    for key in ("static_variables", "encoder_variables", "decoder_variables"):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-5, atol=1e-6)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grads.keys() == ref_grads.keys()
    scale = max(float(g.abs().max()) for g in ref_grads.values())
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-4, atol=1e-6 * scale, msg=name)


def test_flat_adam_matches_adam_with_clipping(tensors: WindowTensors, spec: FeatureSpec) -> None:
    ref, flat = _model(spec), _model(spec)
    ref.eval()
    flat.eval()
    names = [n for n, _ in ref.named_parameters()]
    adam = torch.optim.Adam(ref.parameters(), lr=3e-3)
    opt = step_ops.FlatAdam(flat, 3e-3, grad_clip=0.05)  # small enough to clip every step
    clipped = []
    for step in range(3):
        x, y = tensors.batch(torch.arange(step * 50, step * 50 + 50))
        adam.zero_grad()
        ref.loss(ref(x)["prediction"], y).backward()
        clipped.append(float(torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.05)) > 0.05)
        adam.step()
        opt.zero_grad()
        flat.loss(flat(x)["prediction"], y).backward()
        opt.step()
    assert all(clipped)
    state = flat.state_dict()
    for n, p in ref.named_parameters():
        torch.testing.assert_close(state[n], p.detach(), rtol=1e-4, atol=1e-6, msg=n)
    base = opt.flat.untyped_storage().data_ptr()
    assert all(p.untyped_storage().data_ptr() == base for p in flat.parameters())
    opt.release()
    # afterwards: every parameter in its own storage, no gradients, the same names as before
    ptrs = {p.untyped_storage().data_ptr() for p in flat.parameters()}
    assert len(ptrs) == len(names)
    assert all(p.grad is None for p in flat.parameters())
    assert [n for n, _ in flat.named_parameters()] == names


def test_masked_loss_equals_quantile_loss_on_observed_steps(
    tensors: WindowTensors, spec: FeatureSpec
) -> None:
    model = _model(spec)
    model.eval()
    x, (targets, bits) = tensors.batch(torch.arange(120))
    with torch.no_grad():
        pred = model(x)["prediction"]
        per = model.loss.per_target(pred, (targets, bits))
    assert per.shape == (len(spec.targets),)
    for k in range(len(spec.targets)):
        seen = ((bits.long() >> k) & 1) == 1
        assert seen.any()
        expected = QuantileLoss(quantiles=list(spec.quantiles)).loss(pred[k], targets[k])
        assert float(per[k]) == pytest.approx(float(expected[seen].mean()), rel=1e-5)


def test_fit_network_is_deterministic_and_leaves_a_plain_model(
    tensors: WindowTensors, spec: FeatureSpec
) -> None:
    cfg = training.TrainConfig(epochs=2, batch_size=64, seed=5, progress=False, net=TINY_NET)
    states, histories = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = network.build(spec, TINY_NET)
        histories.append(training.fit_network(model, tensors, tensors, cfg))
        states.append(model.state_dict())
        assert not model.training
        assert all(p.grad is None for p in model.parameters())
        assert "forward" not in vars(model.static_variable_selection)
    assert [h["val_loss"] for h in histories[0]] == [h["val_loss"] for h in histories[1]]
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), name
    # the kept weights are the best epoch's
    best = min(h["val_loss"] for h in histories[0])
    assert training.validation_loss(model, tensors) == pytest.approx(best, rel=1e-6)
    assert histories[0][-1]["train_loss"] < histories[0][0]["train_loss"] * 1.5
