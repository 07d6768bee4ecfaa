"""The fast path's network agrees with pytorch-forecasting's own predict() to 1e-4, on every
backend (the torch ones but lean bit for bit), and the post-network anchoring is the same
function wherever forecasts are made."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from models import dataset, explain, fastpath, registry, risk, training
from models.errors import ModelsError
from models.features import FeatureSpec
from models.schema import Dataset
from twin import apply_many


@pytest.fixture(scope="module")
def windows(cohort: Dataset, spec: FeatureSpec) -> dataset.Windows:
    w = dataset.build_windows(cohort, spec)
    return w.take(np.arange(0, w.n, max(1, w.n // 70))[:70])


def _predict(model, w: dataset.Windows, spec: FeatureSpec) -> np.ndarray:
    """pytorch-forecasting's predict(), reordered to the windows' order: [N, T, D, Q]."""
    tsd = dataset.timeseries_dataset(dataset.to_frame(w, spec), spec)
    # predict() mutates the trainer_kwargs it gets (adds a callback): always pass a fresh dict
    out = model.predict(
        tsd,
        mode="quantiles",
        batch_size=64,
        trainer_kwargs={"accelerator": "cpu", "logger": False, "enable_progress_bar": False},
    )
    pred = torch.stack(list(out), dim=1).numpy()
    order = np.array([int(g) for g in tsd.decoded_index["window"]])
    back = np.empty_like(pred)
    back[order] = pred
    return back


@pytest.mark.parametrize("backend", ["lean", "torchscript", "torch", "onnx"])
def test_fast_path_equals_predict(
    trained: Path, windows: dataset.Windows, spec: FeatureSpec, backend: str
) -> None:
    fc = fastpath.Forecaster.load(trained, spec, backend=backend)
    assert fc.backend == backend
    # like with like: the network's own output on both sides (the anchoring comes after it)
    fast = fc.raw(fastpath.ModelInputs.from_windows(windows))[0]
    ref = _predict(fc.model, windows, spec)
    assert (
        fast.shape
        == ref.shape
        == (windows.n, len(spec.targets), spec.decoder_steps, len(spec.quantiles))
    )
    assert float(np.abs(fast - ref).max()) <= 1e-4
    # a micro-batch's size too (the lean backend runs calls of up to 64 rows)
    small = fc.raw(fastpath.ModelInputs.from_windows(windows.take(np.arange(40))))[0]
    assert float(np.abs(small - ref[:40]).max()) <= 1e-4


def test_anchoring_is_applied_identically_in_every_path(
    trained: Path, windows: dataset.Windows, spec: FeatureSpec
) -> None:
    """The served forecast is the checkpoint's anchor applied to the network's output, whether
    that output comes from predict(), the fast path's run() or the evaluation's batches."""
    fc = fastpath.Forecaster.load(trained, spec)
    assert fc.anchor is not None
    assert (fc.anchor.weight < 1).any()  # a real, fitted anchor
    inputs = fastpath.ModelInputs.from_windows(windows)
    served = fc.run(inputs).quantiles
    via_predict = fc.anchor.apply(_predict(fc.model, windows, spec), windows.last_obs)
    assert float(np.abs(served - via_predict).max()) <= 1e-4
    np.testing.assert_array_equal(training.predict_quantiles(fc, windows), served)
    raw = fc.raw(inputs)[0]
    assert float(np.abs(served - raw).max()) > 1e-3  # the anchoring did change something
    np.testing.assert_array_equal(
        fc.run(inputs).risk,
        fc.risk_head.predict(risk.features(served, risk.RiskContext.of(inputs, spec), spec))[0],
    )


def test_batch_size_does_not_change_results(
    trained: Path, windows: dataset.Windows, spec: FeatureSpec
) -> None:
    fc = fastpath.Forecaster.load(trained, spec)
    inputs = fastpath.ModelInputs.from_windows(windows)
    whole = fc.run(inputs)
    one = [fc.run(inputs.take([i])) for i in (0, 17, windows.n - 1)]
    for i, b in zip((0, 17, windows.n - 1), one, strict=True):
        assert np.abs(b.quantiles[0] - whole.quantiles[i]).max() <= 1e-4
        assert np.abs(b.risk[0] - whole.risk[i]).max() <= 1e-6


def test_results_from_twin_states(
    trained: Path, cohort: Dataset, spec: FeatureSpec, events_for
) -> None:
    fc = fastpath.Forecaster.load(trained, spec)
    pids = cohort.patient_ids[:4]
    t_end = int(cohort.samples["t_ms"].max())
    states = [apply_many(None, events_for(cohort, p, t_end - 3_600_000))[0] for p in pids]
    results = fc.forecast_states(states)
    assert [r.patient_id for r in results] == pids
    r = results[0]
    assert set(r.risk) == {float(h) for h in spec.risk_horizons_h}
    assert all(0 <= r.risk_low[h] <= r.risk_high[h] <= 1 for h in r.risk)
    q = np.asarray(r.quantiles["heart_rate"])
    assert q.shape == (spec.decoder_steps, len(spec.quantiles))
    assert np.isfinite(q).all()
    fr = r.to_forecast_risk()
    assert fr.made_at_ms == r.at_ms
    assert fr.outcome == "deterioration"
    assert len(fr.explanation) == 6
    assert fr.explanation[-1].feature == "attention_peak"


def test_workers_split_a_batch_and_keep_every_row_its_own(
    trained: Path, cohort: Dataset, windows: dataset.Windows, spec: FeatureSpec, events_for
) -> None:
    """With two workers a batch runs as two chunks at once; each patient still gets exactly
    the forecast it gets alone (a chunk put back in the wrong place would swap patients)."""
    one = fastpath.Forecaster.load(trained, spec)
    two = fastpath.Forecaster.load(trained, spec, workers=2)
    calls: list[int] = []
    runner = two.runner

    def counting(enc, dec, scale):  # type: ignore[no-untyped-def]
        calls.append(len(enc))
        return runner(enc, dec, scale)

    two.runner = counting  # type: ignore[assignment]
    inputs = fastpath.ModelInputs.from_windows(windows)
    split = two.raw(inputs)
    assert calls == [35, 35]
    assert float(np.abs(split[0] - _predict(one.model, windows, spec)).max()) <= 1e-4
    for a, b in zip(split, one.raw(inputs), strict=True):
        assert a.shape == b.shape
        assert float(np.abs(a - b).max()) <= 1e-4

    # twin states, each at several forecast origins: 20 distinct rows, and 260, whose chunks'
    # features are built while the previous chunk's network runs (PIPELINE_MIN_ROWS)
    t_end = int(cohort.samples["t_ms"].max())
    pids = cohort.patient_ids[:4]
    states = [apply_many(None, events_for(cohort, p, t_end - 3_600_000))[0] for p in pids]
    assert fastpath.PIPELINE_MIN_ROWS <= 260
    for per_twin, split_calls in ((5, [10, 10]), (65, [130, 130])):
        rows = [(st, st.watermark_ms - k * 900_000) for st in states for k in range(per_twin)]
        at = [(t // spec.bin_ms) * spec.bin_ms for _, t in rows]
        calls.clear()
        got = two.forecast_states([st for st, _ in rows], at)
        assert calls == split_calls
        want = one.forecast_states([st for st, _ in rows], at)
        assert [(r.patient_id, r.at_ms) for r in got] == [(r.patient_id, r.at_ms) for r in want]
        for g, w in zip(got, want, strict=True):
            assert float(np.abs(g.quantile_array - w.quantile_array).max()) <= 1e-4
            assert max(abs(g.risk[h] - w.risk[h]) for h in w.risk) <= 1e-6
            assert [d.feature for d in g.drivers()] == [d.feature for d in w.drivers()]
    rows = [(st, st.watermark_ms - k * 900_000) for st in states for k in range(5)]
    at = [(t // spec.bin_ms) * spec.bin_ms for _, t in rows]
    # a batch too small to split runs on the calling thread alone
    calls.clear()
    two.forecast_states([st for st, _ in rows[:15]], at[:15])
    assert calls == [15]
    two.close()
    assert len(two.forecast_states([st for st, _ in rows], at)) == 20  # still works, unsplit
    with pytest.raises(ModelsError, match="workers"):
        fastpath.Forecaster.load(trained, spec, workers=0)


def test_explanation_agrees_with_interpret_output(
    trained: Path, windows: dataset.Windows, spec: FeatureSpec
) -> None:
    model, _ = registry.load(trained, spec)
    x = fastpath.model_x(fastpath.ModelInputs.from_windows(windows), spec)
    fc = fastpath.TorchRunner(model, spec)
    _, sw, ew, att = fc(*x)
    ex = explain.explain(sw, ew, att, spec)
    from models.batches import WindowTensors

    xb, _ = WindowTensors(windows, spec).batch(torch.arange(windows.n))
    with torch.no_grad():
        out = model(xb)
    interp = model.interpret_output(out, reduction="none")
    static, hist = explain.importances(sw, ew, spec)
    enc = interp["encoder_variables"].numpy()
    # interpret_output reports percentages normalised over the batch rows; the ranking per
    # row is what an explanation shows
    np.testing.assert_array_equal(np.argmax(hist, axis=1), np.argmax(enc, axis=1))
    np.testing.assert_array_equal(
        np.argmax(static, axis=1), np.argmax(interp["static_variables"].numpy(), axis=1)
    )
    assert all(len(e.top) == 5 and 0 < e.attention_peak_h <= 8 for e in ex)


def test_results_records_equal_constructor_built_ones(
    trained: Path, windows: dataset.Windows, spec: FeatureSpec
) -> None:
    """``results`` and ``explain`` set each record's ``__dict__`` in one step instead of calling
    the frozen dataclasses' ``__init__``: the records must be what the constructors build, field
    by field and type by type, and the explanations what a per-row reference computes."""
    fc = fastpath.Forecaster.load(trained, spec)
    batch = fc.run(fastpath.ModelInputs.from_windows(windows))
    ids = [f"p{i}" for i in range(batch.n)]
    records = fc.results(batch, ids)
    names = explain._names(spec)
    static, hist = explain.importances(batch.static_weights, batch.encoder_weights, spec)
    weights = np.concatenate([static, hist], axis=1)
    att = batch.encoder_attention.mean(axis=(1, 2))
    hs = tuple(float(h) for h in spec.risk_horizons_h)
    assert len(records) == batch.n
    for i, rec in enumerate(records):
        order = np.argsort(-weights[i], kind="stable")[:5]
        peak = int(att[i].argmax())
        want_ex = explain.Explanation(
            top=tuple((*names[j], round(float(weights[i, j]), 4)) for j in order.tolist()),
            attention_peak_h=(att.shape[1] - peak - 0.5) * spec.step_s / 3600,
            attention_peak_weight=round(float(att[i, peak]), 4),
        )
        want = fastpath.PatientForecast(
            patient_id=ids[i],
            at_ms=int(batch.origin_ms[i]),
            model=fc.name,
            step_minutes=spec.step_s // 60,
            targets=spec.targets,
            quantile_levels=spec.quantiles,
            quantile_array=batch.quantiles[i],
            horizons_h=hs,
            risk={h: float(p) for h, p in zip(hs, batch.risk[i], strict=True)},
            risk_low={h: float(p) for h, p in zip(hs, batch.risk_low[i], strict=True)},
            risk_high={h: float(p) for h, p in zip(hs, batch.risk_high[i], strict=True)},
            explanation=want_ex,
        )
        # same attributes in the same order (repr, pickling and vars() read them)
        assert list(vars(rec)) == list(vars(want))
        assert list(vars(rec.explanation)) == list(vars(want_ex))
        assert rec.explanation == want_ex
        assert repr(rec.explanation) == repr(want_ex)
        assert [tuple(map(type, t)) for t in rec.explanation.top] == [
            tuple(map(type, t)) for t in want_ex.top
        ]
        for name, value in vars(want).items():
            got = getattr(rec, name)
            assert type(got) is type(value), name
            if isinstance(value, np.ndarray):
                assert got.dtype == value.dtype
                assert got.tobytes() == value.tobytes()
            else:
                assert got == value, name
        assert rec.to_dict() == want.to_dict()
        assert rec.to_forecast_risk() == want.to_forecast_risk()
        with pytest.raises(dataclasses.FrozenInstanceError):
            rec.model = "other"  # type: ignore[misc]
