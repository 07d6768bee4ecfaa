"""The statistics against hand-worked and published values, and their coverage by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulators.trials import stats as st


def test_newcombe_interval_matches_the_published_example() -> None:
    # Newcombe (Stat Med 1998), method 10, example (a): 56/70 vs 48/80 -> 0.0524 to 0.3339.
    y1 = [1] * 56 + [0] * 14
    y0 = [1] * 48 + [0] * 32
    rd = st.risk_difference(y1, y0)
    assert rd.value == pytest.approx(0.2)
    assert rd.lo == pytest.approx(0.0524, abs=5e-4)
    assert rd.hi == pytest.approx(0.3339, abs=5e-4)


def test_wilson_interval_of_no_events_starts_at_zero() -> None:
    p = st.proportion([0] * 20)
    assert p.lo == 0.0
    assert p.hi == pytest.approx(0.1611, abs=1e-3)


def test_paired_risk_difference_is_the_mean_within_twin_difference() -> None:
    y1 = np.array([1, 0, 0, 1, 0, 0, 0, 1])
    y0 = np.array([1, 1, 0, 1, 1, 0, 0, 1])
    rd = st.risk_difference(y1, y0, paired=True)
    d = y1 - y0
    assert rd.value == pytest.approx(d.mean())
    assert rd.se == pytest.approx(d.std(ddof=1) / math.sqrt(d.size))
    same = st.risk_difference(y1, y1, paired=True)
    assert (same.value, same.lo, same.hi, same.p) == (0.0, 0.0, 0.0, 1.0)


def test_relative_risk_and_nnt() -> None:
    y1 = [1] * 10 + [0] * 90
    y0 = [1] * 20 + [0] * 80
    rr = st.relative_risk(y1, y0)
    assert rr.value == pytest.approx(0.5)
    assert rr.se == pytest.approx(math.sqrt(1 / 10 - 1 / 100 + 1 / 20 - 1 / 100))
    n = st.nnt(st.risk_difference(y1, y0))
    assert n["kind"] == "benefit"
    assert n["value"] == pytest.approx(10)
    assert not n["spans_infinity"]
    assert n["lo"] < 10 < n["hi"]
    wide = st.nnt(st.risk_difference([1] * 3 + [0] * 17, [1] * 4 + [0] * 16))
    assert wide["spans_infinity"]
    assert "to infinity to" in wide["text"]


def test_kaplan_meier_by_hand() -> None:
    km = st.kaplan_meier([1, 2, 2, 3, 4, 5], [1, 1, 0, 1, 0, 1])
    np.testing.assert_allclose(km.time, [0, 1, 2, 3, 5])
    np.testing.assert_allclose(km.survival, [1, 5 / 6, 5 / 6 * 4 / 5, 5 / 6 * 4 / 5 * 2 / 3, 0])
    np.testing.assert_array_equal(km.at_risk, [6, 6, 5, 3, 1])
    assert (km.lo <= km.survival + 1e-12).all()
    assert (km.hi >= km.survival - 1e-12).all()
    assert km.median().value == 3.0


def _logrank_by_hand(t: np.ndarray, e: np.ndarray, g: np.ndarray) -> float:
    o = ex = v = 0.0
    for u in np.unique(t[e]):
        r = t >= u
        n, n1 = r.sum(), (r & g).sum()
        d, d1 = (e & (t == u)).sum(), (e & (t == u) & g).sum()
        o += d1
        ex += d * n1 / n
        v += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1) if n > 1 else 0.0
    return (o - ex) ** 2 / v


def test_logrank_with_ties_and_strata() -> None:
    rng = np.random.default_rng(3)
    t = np.round(rng.exponential(1, 300), 1)
    e = rng.random(300) < 0.7
    g = rng.random(300) < 0.5
    chi2, p = st.logrank(t, e, g)
    assert chi2 == pytest.approx(_logrank_by_hand(t, e, g))
    assert p == pytest.approx(math.erfc(math.sqrt(chi2 / 2)))
    s = rng.integers(0, 3, 300)
    chi2_s, _ = st.logrank(t, e, g, s)
    parts = [(t[s == k], e[s == k], g[s == k]) for k in range(3)]
    # A stratified statistic adds the strata's (O - E) and variances.
    o_e = v = 0.0
    for tk, ek, gk in parts:
        x = _logrank_by_hand(tk, ek, gk)
        oe = sum(
            (
                (ek & (tk == u) & gk).sum()
                - (ek & (tk == u)).sum() * ((tk >= u) & gk).sum() / (tk >= u).sum()
            )
            for u in np.unique(tk[ek])
        )
        o_e += oe
        v += oe**2 / x
    assert chi2_s == pytest.approx(o_e**2 / v)


def test_cox_recovers_a_known_hazard_ratio_with_nominal_coverage() -> None:
    rng = np.random.default_rng(11)
    covered, estimates = 0, []
    for _ in range(200):
        g = rng.random(300) < 0.5
        age = rng.normal(size=300)
        t = rng.exponential(1 / (np.where(g, 2.0, 1.0) * np.exp(0.5 * age)))
        c = rng.exponential(1.5, 300)
        fit = st.cox(np.minimum(t, c), t <= c, np.column_stack([g, age]))
        hr = st.hazard_ratio(fit)
        covered += hr.lo <= 2.0 <= hr.hi
        estimates.append(math.log(hr.value))
        assert fit.converged
    assert 0.91 <= covered / 200 <= 0.98
    assert math.exp(np.mean(estimates)) == pytest.approx(2.0, rel=0.05)


def test_stratified_cox_on_pairs_and_no_event_groups() -> None:
    rng = np.random.default_rng(2)
    n = 400
    frailty = rng.exponential(1, n)  # a pair shares it: stratification removes it
    t1 = rng.exponential(1 / (0.5 * frailty))
    t0 = rng.exponential(1 / frailty)
    time = np.r_[t1, t0]
    arm = np.r_[np.ones(n), np.zeros(n)]
    pair = np.r_[np.arange(n), np.arange(n)]
    hr = st.hazard_ratio(st.cox(np.minimum(time, 3), time < 3, arm, pair))
    assert hr.lo < 0.5 < hr.hi
    none = st.cox(
        np.r_[np.ones(20), np.ones(20)],
        np.r_[np.zeros(20), np.ones(20)] > 0,
        arm[:40] * 0 + np.r_[np.ones(20), np.zeros(20)],
    )
    assert not none.converged  # no events in one group: the HR is 0, not estimable
    assert math.isnan(st.hazard_ratio(none).value)


def test_chi_square_tail_and_poisson_rate() -> None:
    for x, df, p in (
        (3.841459, 1, 0.05),
        (5.991465, 2, 0.05),
        (7.814728, 3, 0.05),
        (31.410433, 20, 0.05),
        (1.0, 5, 0.962566),
    ):
        assert st.chi2_sf(x, df) == pytest.approx(p, abs=2e-5)
    r = st.poisson_rate(10, 5)
    assert r.value == 2.0
    assert r.lo == pytest.approx(0.959, abs=0.01)
    assert r.hi == pytest.approx(3.678, abs=0.01)
    assert st.heterogeneity(
        [st.Estimate(0.1, 0, 0.2, 0.05), st.Estimate(0.1, 0, 0.2, 0.05)]
    ) == pytest.approx(1.0)


def test_robust_variance_matches_the_model_for_independent_rows() -> None:
    rng = np.random.default_rng(4)
    g = rng.random(500) < 0.5
    t = rng.exponential(1 / np.where(g, 2, 1))
    c = rng.exponential(1.5, 500)
    model = st.cox(np.minimum(t, c), t <= c, g)
    robust = st.cox(np.minimum(t, c), t <= c, g, cluster=np.arange(500))
    assert robust.robust
    assert not model.robust
    assert robust.beta == pytest.approx(model.beta)
    assert robust.se[0] == pytest.approx(model.se[0], rel=0.1)
    # Pairs that share their frailty: the robust variance is smaller than the naive one (the
    # contrast is within pairs); this harmless arm is not flagged.
    frail = rng.exponential(1, 400)
    tt = np.r_[rng.exponential(1 / frail), rng.exponential(1 / frail)]
    arm = np.r_[np.ones(400), np.zeros(400)]
    pair = np.r_[np.arange(400), np.arange(400)]
    paired = st.cox(np.minimum(tt, 2), tt < 2, arm, cluster=pair)
    naive = st.cox(np.minimum(tt, 2), tt < 2, arm)
    assert paired.se[0] < naive.se[0] * 1.2
    hr = st.hazard_ratio(paired)
    assert hr.lo < 1 < hr.hi
