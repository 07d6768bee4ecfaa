"""Enrolment and allocation: criteria honoured, seeded, balanced within strata, stable."""

from __future__ import annotations

import numpy as np
import pytest
from trialhelpers import BASE, spec_from

from simulators.trials import SpecError
from simulators.trials.allocation import allocate, permuted_blocks, stratum_labels
from simulators.trials.population import enrol


def test_enrolment_screens_in_order_and_counts_exclusions() -> None:
    spec = spec_from(
        population={
            "size": 60,
            "home_fraction": 0.3,
            "include": {"age": [50, 90], "setting": "ward", "exclude": ["type1_diabetes"]},
        }
    )
    e = enrol(spec)
    pop = e.population
    assert len(pop) == 60
    assert pop["twin"].is_monotonic_increasing
    assert pop["age"].between(50, 90).all()
    assert (pop["setting"] == "ward").all()
    assert e.screened - 60 == sum(e.excluded.values())
    assert set(e.excluded) <= {"age outside 50-90", "not in ward setting", "has type1_diabetes"}
    assert int(pop["twin"].iloc[-1]) == e.screened - 1  # the last one screened was enrolled


def test_too_narrow_criteria_are_refused() -> None:
    spec = spec_from(population={"size": 5, "include": {"age": [119, 120]}})
    with pytest.raises(SpecError, match="too narrow"):
        enrol(spec)


def test_paired_design_runs_every_twin_under_every_arm() -> None:
    spec = spec_from()
    pop = enrol(spec).population
    alloc = allocate(spec, pop)
    for twins in alloc.values():
        np.testing.assert_array_equal(twins, pop["twin"].to_numpy())


def _randomised(seed: int, size: int = 400, ratios: tuple[int, int] = (1, 1)) -> tuple:
    arms = [dict(BASE["arms"][0], ratio=ratios[0]), dict(BASE["arms"][1], ratio=ratios[1])]
    spec = spec_from(
        seed=seed,
        population={"size": size, "home_fraction": 0.4},
        design={"kind": "randomised", "control": "none", "strata": ["setting", "age_band"]},
        arms=arms,
    )
    pop = enrol(spec).population
    return spec, pop, allocate(spec, pop)


def test_randomisation_is_seeded_and_balanced_within_strata() -> None:
    spec, pop, a = _randomised(5)
    _, _, again = _randomised(5)
    _, _, other = _randomised(6)
    for arm in a:
        np.testing.assert_array_equal(a[arm], again[arm])
    assert not np.array_equal(a["abx"], other["abx"])
    assert sorted(np.concatenate(list(a.values()))) == sorted(pop["twin"])  # each twin once
    labels = np.array(stratum_labels(pop, spec.design.strata))
    twins = pop["twin"].to_numpy()
    half_block = spec.block_size() // 2
    for label in set(labels):
        members = twins[labels == label]
        n_abx = np.isin(members, a["abx"]).sum()
        assert abs(2 * n_abx - members.size) <= 2 * half_block  # within one block


def test_allocation_ratio_is_respected() -> None:
    spec, pop, a = _randomised(7, size=600, ratios=(1, 2))
    assert spec.block_size() == 6
    share = a["abx"].size / len(pop)
    assert abs(share - 2 / 3) < 0.03


def test_a_stratum_keeps_its_allocations_when_enrolment_grows() -> None:
    _, pop_small, small = _randomised(9, size=200)
    _, _pop_big, big = _randomised(9, size=400)
    # The same twins, the same strata: the first 200 are allocated as before, because each
    # stratum's blocks come from its own generator and extend at the end.
    for arm in small:
        np.testing.assert_array_equal(small[arm], big[arm][big[arm] <= pop_small["twin"].max()])


def test_permuted_blocks_contain_each_arm_per_ratio() -> None:
    rng = np.random.default_rng(0)
    seq = permuted_blocks(30, ["a", "b", "c"], [1, 1, 1], 6, rng)
    for k in range(0, 30, 6):
        assert sorted(seq[k : k + 6]) == ["a", "a", "b", "b", "c", "c"]
