"""The cheap pipeline feeds the TFT exactly what pytorch-forecasting's dataloader does."""

from __future__ import annotations

import numpy as np
import torch
from conftest import TINY_NET

from models import batches, dataset, network
from models.features import FeatureSpec
from models.schema import Dataset


def test_batches_equal_the_default_dataloader(cohort: Dataset, spec: FeatureSpec) -> None:
    w = dataset.build_windows(cohort, spec).take(np.arange(0, 600, 5))
    torch.manual_seed(0)
    model = network.build(spec, TINY_NET)
    model.eval()
    tsd = dataset.timeseries_dataset(dataset.to_frame(w, spec), spec)
    x, y = next(iter(tsd.to_dataloader(train=False, batch_size=w.n)))
    order = torch.tensor([int(g) for g in tsd.decoded_index["window"]])
    x2, y2 = batches.WindowTensors(w, spec).batch(order)
    torch.testing.assert_close(x2["encoder_cont"], x["encoder_cont"], rtol=0, atol=0)
    known = len(spec.static_reals) + len(spec.known_reals) + 1  # decoder: unknowns unused
    torch.testing.assert_close(
        x2["decoder_cont"][..., :known], x["decoder_cont"][..., :known], rtol=0, atol=0
    )
    for a, b in zip(x2["target_scale"], x["target_scale"], strict=True):
        torch.testing.assert_close(a, b.to(a.dtype))
    torch.testing.assert_close(y2[1], y[1])
    with torch.no_grad():
        out, out2 = model(x), model(x2)
        for a, b in zip(out["prediction"], out2["prediction"], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert float(model.loss(out["prediction"], y)) == float(model.loss(out2["prediction"], y2))


def test_masked_loss_ignores_unobserved_targets(cohort: Dataset, spec: FeatureSpec) -> None:
    w = dataset.build_windows(cohort, spec).take(np.arange(64))
    torch.manual_seed(0)
    model = network.build(spec, TINY_NET)
    model.eval()
    x, (targets, bits) = batches.WindowTensors(w, spec).batch(torch.arange(64))
    with torch.no_grad():
        pred = model(x)["prediction"]
        base = model.loss(pred, (targets, bits))
        garbage = [t.clone() for t in targets]
        k = spec.targets.index("systolic_bp")
        unobserved = ((bits.long() >> k) & 1) == 0
        garbage[k][unobserved] = 1e6
        assert float(model.loss(pred, (garbage, bits))) == float(base)
