"""The batched feature builder equals the per-twin one, bit for bit, on awkward twin states.

The reference here is the fast path as it was before it was batched: ``TwinState.window()`` per
twin, sliced to the origin, per-twin statics, and NEWS2 scored over every bin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from models import fastpath, outcomes, twin_inputs
from models.features import (
    CONSCIOUSNESS_STALE_MS,
    LAB_STALE_MS,
    FeatureSpec,
    StaticInputs,
)
from models.schema import Dataset
from twin import TwinConfig, TwinState, apply_many
from twin.events import Event, VitalSample
from twin.signals import WINDOW_CHANNELS, Signal
from twin.windows import bins_ending_at

HOUR = 3_600_000


def reference_bins(
    states: Sequence[TwinState], origin_ms: np.ndarray, spec: FeatureSpec
) -> tuple[np.ndarray, np.ndarray]:
    need = spec.lookback_steps * spec.step_bins
    bins = np.full((len(states), len(spec.channels), need), np.nan, np.float32)
    mask = np.zeros(bins.shape, bool)
    for i, st in enumerate(states):
        if st.watermark_ms < 0:
            continue
        vals, m = st.window()
        cols = vals.shape[1]
        end = min(cols - (st.watermark_ms // st.bin_ms - int(origin_ms[i]) // st.bin_ms), cols)
        start = max(end - need, 0)
        if end <= start:
            continue
        bins[i, :, need - (end - start) :] = vals[:, start:end]
        mask[i, :, need - (end - start) :] = m[:, start:end]
    return bins, mask


def reference_statics(
    states: Sequence[TwinState], origin_ms: np.ndarray, spec: FeatureSpec
) -> StaticInputs:
    n = len(states)
    age = np.full(n, np.nan)
    flags = {name: np.zeros(n, bool) for name in (*spec.patient_flags, *spec.origin_flags)}
    labs = {lab: np.full(n, np.nan) for lab in spec.labs}
    for i, st in enumerate(states):
        at = int(origin_ms[i])
        if st.demographics is not None:
            age[i] = twin_inputs._age_years(st.demographics[2], at)
            flags["female"][i] = st.demographics[3] == "female"
        com = st.comorbidities
        flags["heart_failure"][i] = "heart_failure" in com
        flags["copd"][i] = "copd" in com
        flags["diabetes"][i] = bool({"type1_diabetes", "type2_diabetes"} & com)
        flags["ckd"][i] = "ckd" in com
        flags["hypertension"][i] = "hypertension" in com
        flags["spo2_scale2"][i] = "hypercapnic_respiratory_failure" in com or st.spo2_scale == 2
        flags["on_oxygen"][i] = twin_inputs._on_oxygen(st, at)
        for med in ("antibiotic", "diuretic", "insulin"):
            flags[med][i] = med in st.active_medications
        acvpu = twin_inputs._latest(st, Signal.CONSCIOUSNESS, at, CONSCIOUSNESS_STALE_MS)
        flags["not_alert"][i] = bool(np.isfinite(acvpu) and acvpu != 0)
        for lab in spec.labs:
            labs[lab][i] = twin_inputs._latest(st, Signal(lab), at, LAB_STALE_MS[lab])
    return StaticInputs(age=age, flags=flags, labs=labs)


def _without(events: list[Event], drop: Callable[[Event], bool]) -> list[Event]:
    return [e for e in events if not drop(e)]


def _vital(e: Event, *signals: Signal) -> bool:
    return isinstance(e, VitalSample) and e.sig in signals


@pytest.fixture(scope="module")
def varied(cohort: Dataset, events_for) -> tuple[list[TwinState], list[int]]:
    """Twins with short, long (wrapped ring), gappy and partial histories, and their origins."""
    t0 = int(cohort.samples["t_ms"].min())
    t_end = int(cohort.samples["t_ms"].max())
    pids = cohort.patient_ids
    states: list[TwinState] = [TwinState("empty")]
    origins: list[int] = [0]

    def add(st: TwinState, *offsets_h: float) -> None:
        for off in offsets_h:
            states.append(st)
            bin_start = (st.watermark_ms // st.bin_ms) * st.bin_ms
            origins.append(bin_start - int(off * HOUR))

    for k, cut_h in enumerate((0.3, 2.0, 7.5, 20.0, 30.0)):  # short histories ... wrapped ring
        events = events_for(cohort, pids[k], min(t0 + int(cut_h * HOUR), t_end))
        add(apply_many(None, events)[0], 0, 0.25, 3)
    long = events_for(cohort, pids[5], t_end - HOUR)
    gap_lo, gap_hi = t_end - 14 * HOUR, t_end - 6 * HOUR
    add(apply_many(None, _without(long, lambda e: gap_lo <= e.t_ms < gap_hi))[0], 0, 5)
    add(apply_many(None, _without(long, lambda e: _vital(e, Signal.GLUCOSE, Signal.STEPS)))[0], 0)
    add(apply_many(None, _without(long, lambda e: _vital(e, Signal.TEMPERATURE)))[0], 0, 1)
    vitals_only = _without(long, lambda e: not isinstance(e, VitalSample))
    add(apply_many(None, vitals_only)[0], 0)
    small = apply_many(None, long, TwinConfig(window_bins=96))[0]  # another ring length
    add(small, 0, 2, 30)  # 30 h back: the whole requested span lies before its window
    zero = apply_many(None, long)[0].copy()
    # an open bin with no samples reports NaN (mean) - not reachable through apply, but legal
    n_ch = len(WINDOW_CHANNELS)
    zero.open_bins[(zero.watermark_ms // zero.bin_ms) * n_ch] = [0, 0]
    add(zero, 0)
    stale = apply_many(None, long)[0].copy()
    # The slot of the first open bin still holds the bin a day older (out of the window) until
    # that bin closes; with no sample in the open bins yet, nothing covers it.
    stale.ring[:, stale.closed_upto % stale.n_bins] = 42.0
    stale.open_bins = {}
    add(stale, 0)
    ahead = apply_many(None, events_for(cohort, pids[6], t_end - 5 * HOUR))[0]
    add(ahead, -2)  # an origin after the watermark: the window's end is used
    return states, origins


def test_varied_states_cover_open_bins_and_gaps(varied) -> None:
    states, _ = varied
    assert any(len(s.open_bins) > 0 for s in states)
    assert any(np.isfinite(s.window()[0][0]).sum() > 240 for s in states)  # a full day of HR
    assert {s.n_bins for s in states} == {96, 288}


def test_bins_ending_at_watermark_equals_window(varied) -> None:
    states, _ = varied
    for width in (288, 50):
        last = [s.watermark_ms // s.bin_ms for s in states]
        values, mask = bins_ending_at(states, last, width)
        for i, st in enumerate(states):
            ref, ref_mask = st.window()
            ref, ref_mask = ref[:, -width:], ref_mask[:, -width:]
            got, got_mask = values[i, :, width - ref.shape[1] :], mask[i, :, width - ref.shape[1] :]
            np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32), err_msg=str(i))
            np.testing.assert_array_equal(got_mask, ref_mask)
            assert np.isnan(values[i, :, : width - ref.shape[1]]).all()


def test_batched_bins_equal_per_twin_bins(varied, spec: FeatureSpec) -> None:
    states, origins = varied
    origin = np.asarray(origins, np.int64)
    got, got_mask = fastpath.states_bins(states, origin, spec)
    ref, ref_mask = reference_bins(states, origin, spec)
    assert np.isfinite(ref).any()
    assert np.isnan(ref).any()
    # bitwise: NaN == NaN and +0 != -0 here
    np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
    np.testing.assert_array_equal(got_mask, ref_mask)


def test_batched_statics_equal_per_twin_statics(varied, spec: FeatureSpec) -> None:
    states, origins = varied
    origin = np.asarray(origins, np.int64)
    got = fastpath.states_statics(states, origin, spec)
    ref = reference_statics(states, origin, spec)
    np.testing.assert_array_equal(got.age, ref.age)
    assert got.flags.keys() == ref.flags.keys()
    assert got.labs.keys() == ref.labs.keys()
    for name, flag in ref.flags.items():
        assert got.flags[name].dtype == np.bool_
        np.testing.assert_array_equal(got.flags[name], flag, err_msg=name)
    for lab, value in ref.labs.items():
        np.testing.assert_array_equal(got.labs[lab], value, err_msg=lab)
    assert np.isfinite(ref.age).any()
    assert not math.isfinite(ref.age[0])


def test_news2_now_equals_last_bin_of_the_series(varied, spec: FeatureSpec) -> None:
    states, origins = varied
    origin = np.asarray(origins, np.int64)
    bins, _ = reference_bins(states, origin, spec)
    sin = reference_statics(states, origin, spec)
    series = outcomes.news2_series(
        bins,
        spec,
        sin.flags["on_oxygen"][:, None],
        sin.flags["not_alert"][:, None],
        sin.flags["spo2_scale2"],
    )
    now = fastpath.news2_now(bins, sin, spec)
    assert now.dtype == series.dtype
    np.testing.assert_array_equal(now, series[:, -1])
    assert (now > 0).any()


def test_features_from_states_equal_the_per_twin_build(varied, spec: FeatureSpec) -> None:
    from models.features import (
        aggregate_steps,
        encoder_unknowns,
        fill_steps,
        known_inputs,
        static_inputs,
    )

    states, origins = varied
    got = fastpath.features_from_states(states, spec, origins)
    origin = (np.asarray(origins, np.int64) // spec.bin_ms) * spec.bin_ms
    bins, mask = reference_bins(states, origin, spec)
    sin = reference_statics(states, origin, spec)
    steps, obs = aggregate_steps(bins, mask, spec)
    enc = encoder_unknowns(
        fill_steps(steps, spec), obs[..., spec.lookback_steps - spec.encoder_steps :], spec
    )
    series = outcomes.news2_series(
        bins,
        spec,
        sin.flags["on_oxygen"][:, None],
        sin.flags["not_alert"][:, None],
        sin.flags["spo2_scale2"],
    )
    np.testing.assert_array_equal(got.origin_ms, origin)
    np.testing.assert_array_equal(got.enc_unknown, enc)
    np.testing.assert_array_equal(got.known, known_inputs(origin, spec))
    np.testing.assert_array_equal(got.statics, static_inputs(sin, spec))
    np.testing.assert_array_equal(got.news2_now, series[:, -1])
    # last_obs: each target's last observed step, NaN where none is
    seen = np.isfinite(steps)
    lb = steps.shape[-1]
    last_idx = np.where(seen.any(-1), lb - 1 - np.argmax(seen[..., ::-1], axis=-1), 0)
    last = np.take_along_axis(steps, last_idx[..., None], axis=-1)[..., 0]
    ti = [spec.channel_index[t] for t in spec.targets]
    last = np.where(seen.any(-1), last, np.nan)[:, ti].astype(np.float32)
    assert got.last_obs.dtype == np.float32
    assert got.last_obs.flags.c_contiguous
    np.testing.assert_array_equal(got.last_obs.view(np.int32), last.view(np.int32))
    assert np.isnan(last).any()
    assert np.isfinite(last).any()


def reference_steps(values: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Step means and obs as first written: numpy's own reduction over each step's bins."""
    n, c, b = values.shape
    s = b // k
    v = values[..., b - s * k :].reshape(n, c, s, k)
    m = mask[..., b - s * k :].reshape(n, c, s, k)
    count = m.sum(-1)
    total = np.add.reduce(np.where(m, v, np.float32(0)), axis=-1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        step = (total / count).astype(np.float32)
    return step, (count / k).astype(np.float32)


def test_steps_equal_numpy_reduction_bit_for_bit(
    varied, cohort: Dataset, spec: FeatureSpec
) -> None:
    """aggregate_steps sums with matrix-vector products: equal to numpy's reduction wherever the
    float64 sums are exact, which binned vitals are (twin windows and a cohort's grid here)."""
    from models.dataset import build_grid
    from models.features import aggregate_steps

    states, origins = varied
    bins, mask = fastpath.states_bins(states, np.asarray(origins, np.int64), spec)
    grid = build_grid(cohort, spec)
    for values, m in (
        (bins, mask),
        (grid.bins, grid.mask),
        (grid.bins[..., 5:], grid.mask[..., 5:]),
    ):
        got, got_obs = aggregate_steps(values, m, spec)
        ref, ref_obs = reference_steps(values, m, spec.step_bins)
        assert np.isfinite(ref).any()
        assert np.isnan(ref).any()
        np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
        np.testing.assert_array_equal(got_obs.view(np.int32), ref_obs.view(np.int32))


def test_twin_with_other_bins_is_refused(spec: FeatureSpec) -> None:
    from models.errors import SpecMismatch

    odd = TwinState("odd", TwinConfig(bin_s=60))
    with pytest.raises(SpecMismatch):
        fastpath.states_bins([TwinState("ok"), odd], np.zeros(2, np.int64), spec)


def test_no_states_give_empty_inputs(spec: FeatureSpec) -> None:
    got = fastpath.features_from_states([], spec, [])
    assert got.n == 0
    assert got.enc_unknown.shape == (0, spec.encoder_steps, len(spec.unknown_reals))


def test_explanations_equal_the_per_element_build(spec: FeatureSpec) -> None:
    from models import explain

    rng = np.random.default_rng(4)
    n, e, d = 9, spec.encoder_steps, spec.decoder_steps
    n_enc = len(explain.encoder_variable_names(spec))
    sw = rng.dirichlet(np.ones(len(spec.static_reals)), n).astype(np.float32)[:, None, :]
    ew = rng.dirichlet(np.ones(n_enc), (n, e)).astype(np.float32)[:, :, None, :]
    att = rng.random((n, d, 2, e)).astype(np.float32)
    got = explain.explain(sw, ew, att, spec)
    static, hist = explain.importances(sw, ew, spec)
    names = [("static", v) for v in spec.static_reals] + [
        ("history", v) for v in explain.encoder_variable_names(spec)
    ]
    weights = np.concatenate([static, hist], axis=1)
    mean_att = att.mean(axis=(1, 2))
    for i, ex in enumerate(got):
        order = np.argsort(-weights[i], kind="stable")[:5]
        assert ex.top == tuple((*names[j], round(float(weights[i, j]), 4)) for j in order)
        peak = int(mean_att[i].argmax())
        assert ex.attention_peak_h == float((e - peak - 0.5) * spec.step_s / 3600)
        assert ex.attention_peak_weight == round(float(mean_att[i, peak]), 4)
        assert type(ex.attention_peak_h) is float
        assert all(type(w) is float for _, _, w in ex.top)


def test_explanations_with_no_or_one_top_input(spec: FeatureSpec) -> None:
    from models import explain

    rng = np.random.default_rng(5)
    e, d = spec.encoder_steps, spec.decoder_steps
    n_enc = len(explain.encoder_variable_names(spec))
    sw = rng.dirichlet(np.ones(len(spec.static_reals)), 3).astype(np.float32)[:, None, :]
    ew = rng.dirichlet(np.ones(n_enc), (3, e)).astype(np.float32)[:, :, None, :]
    att = rng.random((3, d, 2, e)).astype(np.float32)
    none = explain.explain(sw, ew, att, spec, top_k=0)
    assert [ex.top for ex in none] == [(), (), ()]
    one = explain.explain(sw, ew, att, spec, top_k=1)
    assert [ex.top for ex in one] == [ex.top[:1] for ex in explain.explain(sw, ew, att, spec)]
