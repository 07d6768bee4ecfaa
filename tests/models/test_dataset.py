"""Training windows: shapes, masks, no leakage of the future, and equality with the twin path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import dataset, fastpath, outcomes, schema
from models.errors import SchemaError
from models.features import FeatureSpec
from twin import apply_many


def test_shapes_and_masks(cohort: schema.Dataset, spec: FeatureSpec) -> None:
    w = dataset.build_windows(cohort, spec)
    e, d, t = spec.encoder_steps, spec.decoder_steps, len(spec.targets)
    assert w.enc_unknown.shape == (w.n, e, len(spec.unknown_reals))
    assert w.enc_targets.shape == (w.n, e, t)
    assert w.known.shape == (w.n, e + d, len(spec.known_reals))
    assert w.statics.shape == (w.n, len(spec.static_reals))
    assert w.dec_targets.shape == (w.n, d, t)
    assert w.labels.shape == (w.n, len(spec.risk_horizons_h))
    # inputs are always finite (missing data is filled, never NaN); targets are NaN-masked
    for arr in (w.enc_unknown, w.enc_targets, w.known, w.statics):
        assert np.isfinite(arr).all()
    assert (w.dec_mask == np.isfinite(w.dec_targets)).all()
    assert w.dec_mask[..., 0].mean() > 0.8  # the wearable's heart rate is nearly always there
    assert w.dec_mask[..., spec.targets.index("systolic_bp")].mean() < 0.5  # the cuff is not
    assert ((w.origin_ms - 1_767_571_200_000) % spec.step_ms == 0).all()
    # obs inputs are shares of bins in [0, 1]
    obs = w.enc_unknown[..., [spec.unknown_reals.index(f"obs_{c}") for c in spec.obs_channels]]
    assert obs.min() >= 0
    assert obs.max() <= 1


def _cut(ds: schema.Dataset, cutoff: int) -> schema.Dataset:
    """The dataset as known at ``cutoff``: later observations and unreleased labs removed."""
    s = ds.samples
    known = s["available_ms"].fillna(s["t_ms"]) if "available_ms" in s.columns else s["t_ms"]
    keep = (s["t_ms"] < cutoff) & (known <= cutoff)
    return schema.validate(
        s[keep], ds.static, ds.treatments[ds.treatments["t_ms"] <= cutoff], ds.labels
    )


def test_no_future_in_inputs(cohort: schema.Dataset, spec: FeatureSpec) -> None:
    full = dataset.build_windows(cohort, spec)
    origins = np.unique(full.origin_ms)
    cutoff = int(origins[len(origins) // 2])
    cut = dataset.build_windows(_cut(cohort, cutoff), spec)
    a = full.take(np.nonzero(full.origin_ms == cutoff)[0])
    b = cut.take(np.nonzero(cut.origin_ms == cutoff)[0])
    assert a.n > 5
    assert a.n == b.n
    assert (a.patient == b.patient).all()
    for name in ("enc_unknown", "enc_targets", "known", "statics", "last_obs", "news2_now"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    # ... while the future itself differs: the targets after the cut are gone
    assert np.isfinite(a.dec_targets).any()
    assert not np.isfinite(b.dec_targets).any()


def test_windows_match_the_twin(cohort: schema.Dataset, spec: FeatureSpec, events_for) -> None:
    """A window built from the dataset equals the fast path's inputs from a live TwinState."""
    w = dataset.build_windows(cohort, spec)
    pids = list(w.patient_ids)
    for pid in pids[:3]:
        rows = np.nonzero(w.patient == pids.index(pid))[0]
        r = rows[len(rows) * 2 // 3]
        origin = int(w.origin_ms[r])
        state, _ = apply_many(None, events_for(cohort, pid, origin))
        assert state is not None
        live = fastpath.features_from_states([state], spec, [origin])
        np.testing.assert_array_equal(live.enc_unknown[0], w.enc_unknown[r])
        np.testing.assert_array_equal(live.known[0], w.known[r])
        np.testing.assert_array_equal(live.last_obs[0], w.last_obs[r])
        assert live.news2_now[0] == w.news2_now[r]
        age = spec.static_reals.index("age")
        others = [i for i in range(len(spec.static_reals)) if i != age]
        np.testing.assert_array_equal(live.statics[0, others], w.statics[r, others])
        # age: the twin knows a birth date, the table an age in years (under a year apart)
        assert abs(live.statics[0, age] - w.statics[r, age]) < 1.0 / 15


def test_labels_follow_the_outcome_definition(cohort: schema.Dataset, spec: FeatureSpec) -> None:
    w = dataset.build_windows(cohort, spec)
    h = np.asarray(spec.risk_horizons_h) * 3_600_000
    pos = w.labels == 1
    within = (w.event_ms[:, None] <= w.origin_ms[:, None] + h) & (
        w.event_ms[:, None] != outcomes.NEVER
    )
    assert (pos == within).all()
    censored = np.isnan(w.labels)
    assert (~censored | (w.data_end_ms[:, None] < w.origin_ms[:, None] + h)).all()
    assert w.eligible.any()
    assert (~w.eligible).any()


def test_frame_round_trip_keeps_windows(cohort: schema.Dataset, spec: FeatureSpec) -> None:
    w = dataset.build_windows(cohort, spec).take(np.arange(30))
    frame = dataset.to_frame(w, spec)
    assert len(frame) == 30 * (spec.encoder_steps + spec.decoder_steps)
    tsd = dataset.timeseries_dataset(frame, spec)
    assert len(tsd) == 30


def test_schema_rejects_bad_tables(cohort: schema.Dataset) -> None:
    s, st = cohort.samples, cohort.static
    with pytest.raises(SchemaError, match="unknown signal"):
        schema.validate(s.assign(signal="pulse"), st)
    with pytest.raises(SchemaError, match="missing column"):
        schema.validate(s.drop(columns=["t_ms"]), st)
    with pytest.raises(SchemaError, match="finite"):
        schema.validate(s.assign(value=np.nan), st)
    with pytest.raises(SchemaError, match="not in static"):
        schema.validate(s, st.iloc[1:])
    with pytest.raises(SchemaError, match="unique"):
        schema.validate(s, pd.concat([st, st.iloc[:1]]))
    bad = cohort.labels.copy()
    bad.loc[bad.index[:1], "critical_event_ms"] = bad["onset_ms"].iloc[0] - 1
    with pytest.raises(SchemaError, match="precede"):
        schema.validate(s, st, labels=bad)


def test_implausible_values_are_dropped_like_the_twin(cohort: schema.Dataset) -> None:
    s = cohort.samples.iloc[:10].copy()
    s.loc[s.index[0], ["signal", "value"]] = ["heart_rate", 0.0]
    assert len(schema.validate(s, cohort.static).samples) == 9


def test_save_load_and_fingerprint(cohort: schema.Dataset, tmp_path) -> None:
    cohort.save(tmp_path)
    back = schema.load_dataset(tmp_path)
    assert back.fingerprint() == cohort.fingerprint()
    shuffled = schema.Dataset(
        cohort.samples.sample(frac=1.0, random_state=1),
        cohort.static,
        cohort.treatments,
        cohort.labels,
    )
    assert shuffled.fingerprint() == cohort.fingerprint()
    changed = cohort.samples.copy()
    changed.loc[changed.index[5], "value"] += 1
    assert schema.Dataset(changed, *list(vars(cohort).values())[1:]).fingerprint() != (
        cohort.fingerprint()
    )


def test_merge_keeps_each_cohorts_patients_apart(cohort: schema.Dataset, spec: FeatureSpec) -> None:
    """Two cohorts whose patient ids repeat stay distinct groups: the second's indices are
    offset past the first's, and every row still names its own patient."""
    w = dataset.build_windows(cohort, spec, stride_steps=4)
    a, b = w.take(np.arange(0, w.n, 2)), w.take(np.arange(1, w.n, 2))
    merged = dataset.Windows.merge([a, b])
    n_p = len(w.patient_ids)
    assert merged.n == a.n + b.n
    assert merged.patient_ids == w.patient_ids + w.patient_ids
    np.testing.assert_array_equal(merged.patient[: a.n], a.patient)
    np.testing.assert_array_equal(merged.patient[a.n :], b.patient + n_p)
    names = [merged.patient_ids[i] for i in merged.patient]
    assert names == [w.patient_ids[i] for i in (*a.patient, *b.patient)]
    assert set(np.unique(merged.patient[: a.n])).isdisjoint(np.unique(merged.patient[a.n :]))
    np.testing.assert_array_equal(merged.labels[a.n :], b.labels)
    with pytest.raises(SchemaError):
        dataset.Windows.merge([])
