"""Checkpoints round-trip bit for bit; a different feature spec or a damaged file is refused."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models import dataset, fastpath, registry
from models.errors import CheckpointError, SpecMismatch
from models.features import FeatureSpec
from models.schema import Dataset


def test_round_trip_gives_identical_forecasts(
    trained: Path, cohort: Dataset, spec: FeatureSpec
) -> None:
    model, ckpt = registry.load(trained, spec)
    meta = ckpt.metadata
    assert meta["spec_hash"] == spec.hash()
    assert meta["data"]["fingerprint"] == cohort.fingerprint()
    assert {"torch", "pytorch-forecasting", "numpy"} <= set(meta["versions"])
    assert "val_loss" in meta["metrics"]
    assert meta["training"]["seed"] == 7
    inputs = fastpath.ModelInputs.from_windows(
        dataset.build_windows(cohort, spec).take(np.arange(40))
    )
    again, _ = registry.load(trained)
    a = fastpath.TorchRunner(model, spec)(*fastpath.model_x(inputs, spec))[0]
    b = fastpath.TorchRunner(again, spec)(*fastpath.model_x(inputs, spec))[0]
    np.testing.assert_array_equal(a, b)


def test_spec_mismatch_is_refused(trained: Path, spec: FeatureSpec) -> None:
    other = dataclasses.replace(spec, encoder_steps=spec.encoder_steps + 2)
    with pytest.raises(SpecMismatch, match="encoder_steps"):
        registry.load(trained, other)
    with pytest.raises(SpecMismatch):
        fastpath.Forecaster.load(trained, FeatureSpec())


def test_damaged_checkpoints_are_refused(trained: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(trained, bad)
    (bad / registry.WEIGHTS).write_bytes((bad / registry.WEIGHTS).read_bytes()[:-10] + b"x" * 10)
    with pytest.raises(CheckpointError, match="sha256"):
        registry.load(bad)
    edited = tmp_path / "edited"
    shutil.copytree(trained, edited)
    meta = json.loads((edited / registry.META).read_text())
    meta["spec"]["decoder_steps"] += 1
    (edited / registry.META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="spec hash"):
        registry.read(edited)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        registry.read(tmp_path)


def test_spec_hash_is_stable_and_sensitive() -> None:
    a, b = FeatureSpec(), FeatureSpec()
    assert a.hash() == b.hash() == FeatureSpec.from_dict(json.loads(json.dumps(a.to_dict()))).hash()
    assert dataclasses.replace(a, decoder_steps=30).hash() != a.hash()
    with pytest.raises(SpecMismatch, match="risk horizons"):
        dataclasses.replace(a, step_bins=3)
