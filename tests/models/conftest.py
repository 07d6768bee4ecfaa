"""Shared fixtures for the models tests: a tiny spec, a synthetic cohort, one trained model.

Everything is small on purpose (one torch thread, a hidden size of 8, one short epoch): the
whole models suite must stay well under three minutes on two shared cores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from models import synthetic, training
from models.features import FeatureSpec
from models.network import NetConfig
from models.replay import twin_events
from models.schema import Dataset
from twin.events import Event

torch.set_num_threads(1)


def pytest_configure(config: pytest.Config) -> None:
    # pytorch-forecasting's own warnings about its internals, not about our code
    for text in (
        "The given NumPy array is not writable",
        "The '.*dataloader' does not have",
        "Attribute '.*' is an instance of `nn.Module`",
    ):
        config.addinivalue_line("filterwarnings", f"ignore:{text}")


TINY_SPEC = FeatureSpec(encoder_steps=8, decoder_steps=12, risk_horizons_h=(1, 2, 4, 6))
TINY_NET = NetConfig(hidden_size=8, attention_head_size=1, hidden_continuous_size=4)


@pytest.fixture(scope="session")
def spec() -> FeatureSpec:
    return TINY_SPEC


@pytest.fixture(scope="session")
def cohort() -> Dataset:
    return synthetic.cohort(patients=24, days=1.5, seed=3)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, cohort: Dataset) -> Path:
    """A tiny model trained once for the session; its checkpoint directory."""
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    cfg = training.TrainConfig(
        epochs=1,
        batch_size=128,
        n_boot=4,
        threads=1,
        progress=False,
        stride_steps=2,
        net=TINY_NET,
    )
    training.train(cohort, TINY_SPEC, cfg, out, name="tiny")
    return out


@pytest.fixture(scope="session")
def events_for() -> Callable[[Dataset, str, int], list[Event]]:
    return twin_events
