"""The anchor on persistence: never worse than either forecast on the data it was fitted on,
intervals that stay calibrated, rows without a last value untouched, a faithful round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import anchor, dataset, evaluation, registry, training
from models.errors import SpecMismatch
from models.fastpath import Forecaster
from models.features import FeatureSpec
from models.schema import Dataset

Z = np.array([-2.054, -1.2816, -0.6745, 0.0, 0.6745, 1.2816, 2.054])  # normal quantiles


def _synthetic(
    spec: FeatureSpec, rng: np.random.Generator, n: int, net_sd: float, pers_sd: float, width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(quantiles [N,T,D,Q], last_obs [N,T], actual [N,D,T]): a truth, a network forecast
    ``net_sd`` off it with intervals ``width`` x its error, a last value ``pers_sd`` off the
    first step's truth (later steps' truths are drawn independently)."""
    t, d = len(spec.targets), spec.decoder_steps
    truth = rng.normal(100, 10, (n, t, d))
    med = truth + rng.normal(0, net_sd, truth.shape)
    q = med[..., None] + width * net_sd * Z
    last = truth[:, :, 0] + rng.normal(0, pers_sd, (n, t))
    actual = truth.transpose(0, 2, 1).copy()
    actual[rng.random(actual.shape) < 0.2] = np.nan  # unobserved steps
    last[rng.random(last.shape) < 0.1] = np.nan  # no last value
    return q.astype(np.float32), last.astype(np.float32), actual.astype(np.float32)


def _mae(q: np.ndarray, last: np.ndarray, actual: np.ndarray, k: int, d: int) -> float:
    """MAE of a median as evaluation computes it: rows with a last value and an observation."""
    y = actual[:, d, k]
    rows = np.isfinite(last[:, k]) & np.isfinite(y)
    return float(np.abs(q[rows, k, d, 3].astype(np.float64) - y[rows]).mean())


def _persistence(q: np.ndarray, last: np.ndarray) -> np.ndarray:
    return np.broadcast_to(last[:, :, None, None], q.shape)


@pytest.mark.parametrize(("net_sd", "pers_sd"), [(1.0, 1.0), (3.0, 0.5), (0.5, 3.0)])
def test_fit_never_worse_than_network_or_persistence(
    spec: FeatureSpec, net_sd: float, pers_sd: float
) -> None:
    rng = np.random.default_rng(int(net_sd * 10 + pers_sd))
    q, last, actual = _synthetic(spec, rng, 400, net_sd, pers_sd, 1.0)
    a = anchor.fit(q, last, actual, spec)
    out = a.apply(q, last)
    for k in range(len(spec.targets)):
        for d in range(spec.decoder_steps):
            got = _mae(out, last, actual, k, d)
            assert got <= _mae(q, last, actual, k, d) * (1 + 1e-6)
            assert got <= _mae(_persistence(q, last), last, actual, k, d) * (1 + 1e-6)
    assert ((a.weight >= 0) & (a.weight <= 1)).all()
    if net_sd == pers_sd:  # equally good at the first step, independent errors: a blend
        assert 0.3 < a.weight[:, 0].mean() < 0.7
    assert a.weight[:, 1:].mean() > 0.9  # later steps' truths are independent of the last value


def test_perfect_forecasts_take_all_the_weight(spec: FeatureSpec) -> None:
    rng = np.random.default_rng(1)
    q, last, actual = _synthetic(spec, rng, 200, 1.0, 1.0, 1.0)
    truth = np.nan_to_num(actual.transpose(0, 2, 1), nan=100.0)
    perfect_net = (truth[..., None] + q - q[..., 3:4]).astype(np.float32)
    assert (anchor.fit(perfect_net, last, actual, spec).weight == 1).all()
    perfect_last = truth[:, :, 0].astype(np.float32)
    steady = actual.copy()
    steady[:] = np.where(np.isfinite(actual), perfect_last[:, None, :], np.nan)
    assert (anchor.fit(q, perfect_last, steady, spec).weight == 0).all()


def test_spread_makes_too_wide_intervals_nominal(spec: FeatureSpec) -> None:
    rng = np.random.default_rng(2)
    q, last, actual = _synthetic(spec, rng, 600, 1.0, 50.0, 2.5)  # intervals 2.5x too wide
    out = anchor.fit(q, last, actual, spec).apply(q, last)
    y = actual.transpose(0, 2, 1)
    ok = np.isfinite(y)
    before = ((y >= q[..., 1]) & (y <= q[..., 5]))[ok].mean()
    after = ((y >= out[..., 1]) & (y <= out[..., 5]))[ok].mean()
    assert before > 0.99
    assert 0.77 < after < 0.83  # the 10-90 % interval covers ~80 % again
    assert (np.diff(out, axis=-1) >= 0).all()  # quantiles never cross


def test_rows_without_a_last_value_keep_the_network_output(spec: FeatureSpec) -> None:
    rng = np.random.default_rng(3)
    q, last, actual = _synthetic(spec, rng, 50, 1.0, 1.0, 1.0)
    out = anchor.fit(q, last, actual, spec).apply(q, last)
    missing = ~np.isfinite(last)
    assert missing.any()
    np.testing.assert_array_equal(out[missing], q[missing])
    identity = anchor.Anchor.identity(spec).apply(q, last)
    np.testing.assert_allclose(identity, q, rtol=0, atol=1e-4)


def test_trained_checkpoint_stores_the_fit_from_validation_patients(
    trained: Path, cohort: Dataset, spec: FeatureSpec, tmp_path: Path
) -> None:
    """The anchor in the checkpoint is the one its validation patients give, and it serves
    validation forecasts no worse than the network or persistence at any horizon."""
    fc = Forecaster.load(trained, spec, backend="torch")
    assert fc.anchor is not None
    meta = registry.read(trained).metadata
    cfg = meta["training"]
    w = dataset.build_windows(cohort, spec, stride_steps=cfg["stride_steps"])
    _, val, _ = training.split_patients(
        cohort.patient_ids, cfg["seed"], cfg["val_fraction"], cfg["calib_fraction"]
    )
    wv = w.take(training.rows_of(w, val))
    raw = training.predict_quantiles(fc, wv, raw=True)
    refit = anchor.fit(raw, wv.last_obs, wv.dec_targets, spec)
    np.testing.assert_array_equal(refit.weight, fc.anchor.weight)
    np.testing.assert_array_equal(refit.spread, fc.anchor.spread)
    served = training.predict_quantiles(fc, wv)
    fq = evaluation.forecast_quality(served, wv, spec, network=raw)
    stored = meta["metrics"]["forecast"]["mae"]
    assert stored.keys() == fq["mae"].keys()
    for target, rows in fq["mae"].items():
        for h, m in rows.items():
            assert m == pytest.approx(stored[target][h], rel=1e-9)
            assert m["tft"] <= min(m["network"], m["persistence"]) * (1 + 1e-6)
    # a stored anchor for another spec is refused
    bad = json.loads(json.dumps(meta["anchor"]))
    bad["weight"] = bad["weight"][:-1]
    with pytest.raises(SpecMismatch):
        anchor.Anchor.from_dict(bad, spec)
