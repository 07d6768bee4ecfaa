"""The risk cohort: training fits the risk heads on it too (never the network) and records it;
the cross-fitted design comparison then also reports what the head learns without it, and says
how many patients and deteriorations it scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from conftest import TINY_NET

from models import dataset, evaluation, outcomes, risk, schema, synthetic, training
from models.features import FeatureSpec


def _windows(cohort: schema.Dataset, spec: FeatureSpec) -> tuple[dataset.Windows, np.ndarray]:
    w = dataset.build_windows(cohort, spec, stride_steps=2)
    q = risk.persistence_quantiles(risk.RiskContext.of(w, spec), spec)
    return w, q


def test_training_cohort_only_designs_fit_on_that_cohort(
    cohort: schema.Dataset, spec: FeatureSpec
) -> None:
    w, q = _windows(cohort, spec)
    merged = dataset.Windows.merge([w, w])  # the same windows again, as a "risk cohort"
    qq = np.concatenate([q, q])
    first = np.arange(merged.n) < w.n
    rng = np.random.default_rng(0)
    scored = ~first | np.isin(merged.patient, rng.permutation(len(w.patient_ids))[:8])
    got = evaluation.risk_designs(qq, merged, scored, spec, training_cohort=first, seed=1)
    alone = "tft_quantiles + history, training cohort only"
    assert alone in got
    assert "previous features, training cohort only (previous design)" in got
    # fitted on less data, so the scores differ (were the mask ignored, they would be equal)
    assert got[alone] != got["tft_quantiles + history (shipped)"]
    el = merged.eligible & scored
    events = np.unique(merged.patient[el & (merged.event_ms != outcomes.NEVER)])
    assert got["_scored"] == {
        "patients": int(np.unique(merged.patient[el]).size),
        "deteriorations": int(events.size),
    }
    assert got["_scored"]["deteriorations"] > 0


def test_without_a_risk_cohort_there_is_nothing_to_compare_it_with(
    cohort: schema.Dataset, spec: FeatureSpec
) -> None:
    w, q = _windows(cohort, spec)
    scored = np.isin(w.patient, np.arange(0, len(w.patient_ids), 2))
    got = evaluation.risk_designs(q, w, scored, spec, seed=1)
    assert not any("training cohort only" in name for name in got)
    assert {"tft_quantiles + history (shipped)", "news2_now", "_scored"} <= set(got)


def test_training_fits_the_risk_heads_on_the_risk_cohort_too(
    tmp_path: Path, cohort: schema.Dataset, spec: FeatureSpec
) -> None:
    cfg = training.TrainConfig(
        epochs=1, n_boot=2, threads=1, progress=False, stride_steps=2, net=TINY_NET, onnx=False
    )
    risk_ds = synthetic.cohort(patients=12, days=1.5, seed=5)
    with_risk = training.train(cohort, spec, cfg, tmp_path / "a", name="a", risk_ds=risk_ds)
    plain = training.train(cohort, spec, cfg, None, name="b")
    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    recorded = meta["data"]["risk_cohort"]
    assert recorded["patients"] == 12
    assert recorded["fingerprint"] == risk_ds.fingerprint()
    assert recorded["eligible_windows"] > 0
    assert "tft_quantiles + history, training cohort only" in meta["metrics"]["risk_design"]
    # the network is the same (same seed, same training windows); the heads are not
    for k, v in plain.model.state_dict().items():
        torch.testing.assert_close(with_risk.model.state_dict()[k], v, rtol=0, atol=0)
    heads = [r.checkpoint.risk for r in (with_risk, plain) if r.checkpoint is not None]
    assert len(heads) == 2
    assert heads[0] is not None
    assert heads[1] is not None
    assert not np.allclose(heads[0].weights, heads[1].weights)
