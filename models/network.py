"""Building pytorch-forecasting's TemporalFusionTransformer for a feature spec.

The network's structure depends only on the spec and a few hyperparameters (``NetConfig``), so
a checkpoint stores those two as JSON plus a ``state_dict`` (loaded with ``weights_only=True``;
no pickled objects, nothing to trust). ``build`` makes the variable lists and the pre-fitted
target normaliser through a one-window ``TimeSeriesDataSet`` and ``from_dataset``, which is the
documented way to construct the 1.x TFT.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from models import dataset as dsmod
from models.features import FeatureSpec
from models.losses import MaskedMultiLoss


@dataclass(frozen=True)
class NetConfig:
    hidden_size: int = 16
    attention_head_size: int = 2
    hidden_continuous_size: int = 8
    dropout: float = 0.1
    lstm_layers: int = 1
    learning_rate: float = 3e-3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def loss_for(spec: FeatureSpec) -> MaskedMultiLoss:
    weights = [1.0 / spec.center_scale(t)[1] for t in spec.targets]
    return MaskedMultiLoss(list(spec.quantiles), len(spec.targets), weights)


def template_windows(spec: FeatureSpec, n: int = 1) -> dsmod.Windows:
    """``n`` all-default windows: the smallest input that fixes the network's structure."""
    e, d, t = spec.encoder_steps, spec.decoder_steps, len(spec.targets)
    centers = np.array([spec.center_scale(x)[0] for x in spec.targets], np.float32)
    zeros = np.zeros
    return dsmod.Windows(
        patient_ids=("template",),
        patient=zeros(n, np.int64),
        origin_ms=zeros(n, np.int64),
        enc_unknown=zeros((n, e, len(spec.unknown_reals)), np.float32),
        enc_targets=np.broadcast_to(centers, (n, e, t)).copy(),
        known=zeros((n, e + d, len(spec.known_reals)), np.float32),
        statics=zeros((n, len(spec.static_reals)), np.float32),
        last_obs=np.full((n, t), np.nan, np.float32),
        dec_targets=np.broadcast_to(centers, (n, d, t)).copy(),
        news2_now=zeros(n, np.int16),
        event_ms=zeros(n, np.int64),
        data_end_ms=zeros(n, np.int64),
        labels=zeros((n, len(spec.risk_horizons_h)), np.float32),
    )


def build(spec: FeatureSpec, config: NetConfig) -> Any:
    """A freshly initialised TFT (call ``torch.manual_seed`` first for reproducible weights)."""
    from pytorch_forecasting import TemporalFusionTransformer

    from models.explain import encoder_variable_names

    tsd = dsmod.timeseries_dataset(dsmod.to_frame(template_windows(spec), spec), spec)
    with warnings.catch_warnings():
        # Lightning notes that the loss module is saved twice in hparams: harmless here, the
        # checkpoint is a state_dict plus our own JSON.
        warnings.simplefilter("ignore")
        model = TemporalFusionTransformer.from_dataset(
            tsd,
            hidden_size=config.hidden_size,
            attention_head_size=config.attention_head_size,
            hidden_continuous_size=config.hidden_continuous_size,
            dropout=config.dropout,
            lstm_layers=config.lstm_layers,
            learning_rate=config.learning_rate,
            loss=loss_for(spec),
            logging_metrics=torch.nn.ModuleList([]),
            log_interval=-1,
            optimizer="adam",
        )
    if (
        list(model.hparams.x_reals) != dsmod.x_reals(spec)
        or list(model.static_variables) != list(spec.static_reals)
        or list(model.encoder_variables) != encoder_variable_names(spec)
    ):
        raise AssertionError("pytorch-forecasting ordered the inputs unexpectedly")
    return model
