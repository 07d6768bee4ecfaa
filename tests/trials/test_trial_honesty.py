"""Statistical honesty: A/A trials reject at the nominal rate; a known effect is recovered.

Both checks repeat a randomised trial over many seeds. Running hundreds of trials end to end
would take minutes, so each repetition draws its population from a pool of twins simulated
once (the pool is run through the trial machinery, ``run_trial``) and is then allocated
(``allocation.allocate``) and analysed (``analysis.compare``) exactly as a trial is. This is
equivalent to re-running: a twin's outcome under an arm depends only on the trial seed and its
index, so simulating it again would give the same record. What varies between repetitions -
who is enrolled and who gets which arm - is what a trial's confidence interval accounts for.

The known effect comes from the paired design: every pooled twin ran under both arms, so each
twin's effect is observed and the pool's true average effect is known exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trialhelpers import spec_from

from simulators.trials import analyse, run_trial
from simulators.trials.allocation import allocate
from simulators.trials.analysis import compare

POOL = {"size": 3000, "home_fraction": 0.0, "risk": {"sepsis": 25}}
ABX = {
    "name": "abx",
    "kind": "protocol",
    "condition": "sepsis",
    "delay_h": 3,
    "regimen": {"drug": "antibiotic", "count": 9, "every_h": 8},
}


def _pool(tmp: Path, arms: list[dict]) -> pd.DataFrame:
    spec = spec_from(
        days=3, population=POOL, arms=arms, design={"kind": "paired", "control": arms[0]["name"]}
    )
    run = run_trial(spec, tmp)
    assert run is not None
    return run.records


def _trial(
    seed: int, pool: pd.DataFrame, arms: list[str], n: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One randomised trial of ``n`` twins drawn from the pool, allocated 1:1 in blocks."""
    spec = spec_from(
        seed=seed,
        design={"kind": "randomised", "control": arms[1], "strata": ["age_band"]},
        arms=[{"name": arms[0], "kind": "none"}, {"name": arms[1], "kind": "none"}],
    )
    twins = np.sort(np.random.default_rng(seed).choice(pool["twin"].unique(), n, replace=False))
    first = pool[pool["arm"] == pool["arm"].iloc[0]].set_index("twin")
    population = first.loc[twins].reset_index()
    alloc = allocate(spec, population)
    per_arm = {
        a: pool[pool["arm"] == (arms[0] if a == arms[0] else arms[1])].set_index("twin")
        for a in alloc
    }
    a = per_arm[arms[0]].loc[alloc[arms[0]]].reset_index()
    r = per_arm[arms[1]].loc[alloc[arms[1]]].reset_index()
    return spec, a, r


def test_an_aa_trial_rejects_at_the_nominal_rate(tmp_path: Path) -> None:
    pool = _pool(tmp_path, [{"name": "usual", "kind": "usual_care"}])
    assert pool["critical"].mean() > 0.05  # enough events for the asymptotics to be fair
    pool2 = pd.concat([pool, pool.assign(arm="usual_b")], ignore_index=True)  # identical arms
    seeds = range(200)
    rd_hits = hr_hits = lr_hits = 0
    for seed in seeds:
        spec, a, r = _trial(seed, pool2, ["usual", "usual_b"], 400)
        c = compare(spec, a, r)
        rd = c["critical"]["risk_difference"]
        rd_hits += rd["lo"] > 0 or rd["hi"] < 0
        hr = c["time_to_critical"]["hazard_ratio"]
        hr_hits += hr["lo"] > 1 or hr["hi"] < 1
        lr_hits += c["time_to_critical"]["logrank_p"] < 0.05
    for hits in (rd_hits, hr_hits, lr_hits):
        assert 0.02 <= hits / len(seeds) <= 0.09, (rd_hits, hr_hits, lr_hits)


def test_a_known_effect_is_recovered_with_nominal_coverage(tmp_path: Path) -> None:
    pool = _pool(tmp_path, [{"name": "none", "kind": "none"}, ABX])
    y1 = pool[pool["arm"] == "abx"].sort_values("twin")["critical"].to_numpy(float)
    y0 = pool[pool["arm"] == "none"].sort_values("twin")["critical"].to_numpy(float)
    truth = float((y1 - y0).mean())  # every twin's effect is observed: the pool's true effect
    assert truth < -0.03
    spec = spec_from(days=3, population=POOL, arms=[{"name": "none", "kind": "none"}, ABX])
    paired = analyse(
        spec,
        pool,
        {"screened": 3000, "excluded": {}, "enrolled": 3000, "design": "paired", "allocated": {}},
    )
    rd = paired["comparisons"][0]["critical"]["risk_difference"]
    assert rd["value"] == pytest.approx(truth)
    assert rd["lo"] < truth < rd["hi"]
    covered, estimates = 0, []
    for seed in range(100):
        spec_s, a, r = _trial(seed, pool, ["abx", "none"], 800)
        est = compare(spec_s, a, r)["critical"]["risk_difference"]
        covered += est["lo"] <= truth <= est["hi"]
        estimates.append(est["value"])
    assert covered >= 90
    assert abs(np.mean(estimates) - truth) < 0.01


def test_an_aa_trial_end_to_end(tmp_path: Path) -> None:
    spec = spec_from(
        days=2,
        population={"size": 300, "home_fraction": 0.0, "risk": {"sepsis": 25}},
        design={"kind": "randomised", "control": "a", "strata": ["sex"]},
        arms=[{"name": "a", "kind": "usual_care"}, {"name": "b", "kind": "usual_care"}],
    )
    run = run_trial(spec, tmp_path)
    assert run is not None
    result = analyse(spec, run.records, run.plan.summary())
    c = result["comparisons"][0]
    assert c["arm"] == "b"
    assert c["reference"] == "a"
    assert not c["paired"]
    assert c["critical"]["risk_difference"]["lo"] < 0 < c["critical"]["risk_difference"]["hi"]
