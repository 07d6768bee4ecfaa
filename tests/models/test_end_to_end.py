"""A tiny run through everything: train -> load -> forecast twins -> evaluate -> report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import evaluation, fastpath, protocol, report, synthetic
from models.features import FeatureSpec
from models.schema import Dataset


def test_train_infer_evaluate_report(trained: Path, spec: FeatureSpec, tmp_path: Path) -> None:
    fc = fastpath.Forecaster.load(trained, spec)
    assert isinstance(fc, protocol.ForecasterProtocol)
    held_out = synthetic.cohort(patients=12, days=1.5, seed=99)
    result = evaluation.evaluate(fc, held_out, name="held-out")
    json.dumps(result, allow_nan=False)  # strict JSON
    fq = result["forecast"]
    assert set(fq["mae"]) >= {"heart_rate", "spo2", "respiratory_rate"}
    assert set(fq["mae"]["heart_rate"]) == {"1h", "2h", "4h", "6h"}
    assert 0 <= fq["coverage_all"]["80"] <= 1
    det = result["deterioration"]["6h"]
    assert {"tft", "persistence", "news2", "news2>=5", "news2>=7"} <= set(det)
    gain = det["auroc_difference"]["tft_minus_news2"]
    assert det["tft"]["positives"] > 0  # the cohort holds deteriorations to rank
    assert gain["difference"] == pytest.approx(det["tft"]["auroc"] - det["news2"]["auroc"])
    lo, hi = gain["ci95"]
    assert lo <= gain["difference"] <= hi
    assert result["targets"]["auroc_6h_at_least_news2_plus_0.05"]["difference_ci95"] == [lo, hi]
    assert result["alerting"]["matched_rate"] is not None
    assert "utility" in result["alerting"]
    assert result["subgroups"]
    assert set(result["targets"]) == {
        "tft_beats_persistence_mae_every_horizon",
        "coverage_80_within_75_85",
        "auroc_6h_at_least_news2_plus_0.05",
        "longer_median_lead_time_at_same_alert_rate",
    }
    path = report.write([result], fc.checkpoint.metadata, tmp_path / "eval")
    page = path.read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert (tmp_path / "eval" / "evaluation.json").exists()


def test_baselines_follow_the_protocol(cohort: Dataset, spec: FeatureSpec) -> None:
    from models.dataset import build_windows

    w = build_windows(cohort, spec)
    inputs = fastpath.ModelInputs.from_windows(w.take(np.arange(20)))
    for base in (protocol.PersistenceForecaster(spec), protocol.News2Forecaster(spec)):
        assert isinstance(base.fit(cohort), protocol.ForecasterProtocol)
        out = base.forecast(inputs)
        assert out.quantiles.shape == (
            20,
            len(spec.targets),
            spec.decoder_steps,
            len(spec.quantiles),
        )
        assert np.isfinite(out.risk).all()
        assert len(base.explain(out)) == 20
