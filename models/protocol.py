"""The small protocol every forecaster follows, and the two baselines evaluation compares with.

``fit(dataset)`` learns from a ``schema.Dataset``; ``forecast(inputs)`` turns a batch of
``fastpath.ModelInputs`` (built from twins or from dataset windows) into a
``fastpath.ForecastBatch``; ``explain(batch)`` says why, per row. ``fastpath.Forecaster`` (the
TFT) follows it; so do the baselines:

- ``PersistenceForecaster``: every future step equals the last observed step (all quantiles
  equal), risk from the same calibrated head as the TFT's, fitted on persistence features.
- ``News2Forecaster``: persistence vitals; risk is a logistic calibration of the current NEWS2.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from models import risk as risk_mod
from models.dataset import build_windows
from models.explain import Explanation
from models.fastpath import ForecastBatch
from models.features import FeatureSpec
from models.schema import Dataset
from models.twin_inputs import ModelInputs


@runtime_checkable
class ForecasterProtocol(Protocol):
    spec: FeatureSpec

    def fit(self, dataset: Dataset) -> ForecasterProtocol: ...

    def forecast(self, inputs: ModelInputs) -> ForecastBatch: ...

    def explain(self, batch: ForecastBatch) -> list[Explanation]: ...


def _empty(n: int) -> np.ndarray:
    return np.zeros((n, 0), np.float32)


class PersistenceForecaster:
    kind = "persistence"

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.head: risk_mod.RiskHead | None = None

    def _features(self, inputs: ModelInputs) -> tuple[np.ndarray, np.ndarray]:
        ctx = risk_mod.RiskContext.of(inputs, self.spec)
        q = risk_mod.persistence_quantiles(ctx, self.spec)
        return q, risk_mod.features(q, ctx, self.spec)

    def fit(self, dataset: Dataset) -> PersistenceForecaster:
        w = build_windows(dataset, self.spec)
        w = w.take(w.eligible)
        _, feats = self._features(ModelInputs.from_windows(w))
        self.head = risk_mod.fit(feats, w.labels, w.patient, self.spec, kind=self.kind)
        return self

    def forecast(self, inputs: ModelInputs) -> ForecastBatch:
        q, feats = self._features(inputs)
        if self.head is None:
            p = lo = hi = np.full((inputs.n, len(self.spec.risk_horizons_h)), np.nan)
        else:
            p, lo, hi = self.head.predict(feats)
        e = _empty(inputs.n)
        return ForecastBatch(inputs.origin_ms, q, p, lo, hi, e, e[:, None, None], e[:, None])

    def explain(self, batch: ForecastBatch) -> list[Explanation]:
        return [Explanation((("state", "last observed values", 1.0),), 0.0, 1.0)] * batch.n


class News2Forecaster(PersistenceForecaster):
    kind = "news2"

    def _features(self, inputs: ModelInputs) -> tuple[np.ndarray, np.ndarray]:
        q, feats = super()._features(inputs)
        feats = feats.copy()
        feats[..., 2:] = 0.0  # the current NEWS2 alone
        return q, feats

    def explain(self, batch: ForecastBatch) -> list[Explanation]:
        return [Explanation((("state", "news2_now", 1.0),), 0.0, 1.0)] * batch.n
