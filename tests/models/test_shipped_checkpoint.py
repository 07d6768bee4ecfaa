"""The checkpoint shipped in the repo loads with this code's spec, and its backends agree."""

from __future__ import annotations

import numpy as np
import pytest

from models import fastpath, registry
from models.features import DEFAULT_SPEC
from models.replay import twin_events
from models.synthetic import cohort
from twin import apply_many

pytestmark = pytest.mark.skipif(
    not (registry.DEFAULT_DIR / registry.META).exists(), reason="no shipped checkpoint"
)


def test_shipped_checkpoint_loads_and_backends_agree() -> None:
    ckpt = registry.read(registry.DEFAULT_DIR, DEFAULT_SPEC)
    size = sum(p.stat().st_size for p in registry.DEFAULT_DIR.iterdir())
    assert size < 8 * 2**20  # a few MB at most
    assert ckpt.risk is not None
    assert "risk_persistence" in ckpt.metadata
    # anchored on persistence: on its validation patients it beats the last value everywhere
    assert ckpt.anchor is not None
    assert ckpt.metadata["metrics"]["forecast"]["tft_beats_persistence_everywhere"]
    eager = fastpath.Forecaster.load(backend="torch")
    traced = fastpath.Forecaster.load(backend="torchscript")
    lean = fastpath.Forecaster.load()  # the default backend
    assert lean.backend == "lean"
    ds = cohort(patients=3, days=1.2, seed=8)
    end = int(ds.samples["t_ms"].min()) + 26 * 3_600_000
    states = [apply_many(None, twin_events(ds, p, end))[0] for p in ds.patient_ids]
    others = [fastpath.Forecaster.load(backend="onnx")] if ckpt.onnx_path else []
    for n in (1, 3):
        inputs = fastpath.features_from_states(states[:n], DEFAULT_SPEC)
        ref = eager.run(inputs)
        np.testing.assert_array_equal(traced.run(inputs).quantiles, ref.quantiles)
        served = lean.run(inputs)
        assert np.abs(served.quantiles - ref.quantiles).max() <= 1e-4
        assert np.abs(served.risk - ref.risk).max() <= 1e-6
        for other in others:
            assert np.abs(other.run(inputs).quantiles - ref.quantiles).max() <= 1e-4
