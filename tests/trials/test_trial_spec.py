"""Trial specifications: the shipped examples validate; mistakes are reported clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from trialhelpers import BASE, NEWS2_ARM, raw, spec_from

from simulators.trials import SpecError, TrialSpec, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "trials").glob("*.yaml"))


def test_the_shipped_examples_validate_and_round_trip() -> None:
    assert {p.name for p in EXAMPLES} >= {"early_sepsis.yaml", "hf_diuretics.yaml"}
    for path in EXAMPLES:
        spec = load_spec(path)
        assert spec.design.control in spec.arm_names
        assert spec.comparisons()
        # Workers receive the spec as JSON: it must come back equal.
        assert TrialSpec.model_validate_json(spec.model_dump_json()) == spec


def _error(data: object) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "spec.yaml")
    return str(info.value)


def test_an_unknown_drug_names_the_arm_and_the_field() -> None:
    arms = [BASE["arms"][0], {**BASE["arms"][1], "regimen": {"drug": "aspirin"}}]
    msg = _error(raw(arms=arms))
    assert "spec.yaml is invalid (1 problem)" in msg
    assert "arms[1] 'abx'.regimen.drug" in msg
    assert "'antibiotic'" in msg
    assert "got 'aspirin'" in msg


def test_every_problem_is_reported_at_once() -> None:
    data = raw(days=-1, seed="x")
    del data["population"]
    msg = _error(data)
    assert "(3 problems)" in msg
    for field in ("days:", "seed:", "population: Field required"):
        assert field in msg


def test_cross_field_mistakes_say_what_to_fix() -> None:
    assert "design.control 'usual' is not an arm" in _error(raw(design={"control": "usual"}))
    dup = [BASE["arms"][0], BASE["arms"][0]]
    assert "arm names must be unique: ['none']" in _error(raw(arms=dup))
    ratio = [BASE["arms"][0], {**BASE["arms"][1], "ratio": 2}]
    assert "ratio applies to randomised designs only" in _error(raw(arms=ratio))
    blocks = raw(design={"kind": "randomised", "control": "none", "block_size": 3})
    assert "block_size 3 must be a multiple" in _error(blocks)
    narrow = raw(population={"size": 10, "include": {"require": ["copd"], "exclude": ["copd"]}})
    assert "both required and excluded: ['copd']" in _error(narrow)


def test_monitoring_arms_check_their_rules_and_forecaster() -> None:
    wrong = {**NEWS2_ARM, "act_on": ["news2_7"]}
    msg = _error(raw(arms=[BASE["arms"][0], wrong]))
    assert "arms[1] 'news2'" in msg
    assert "act_on names rules the alert policy does not have" in msg
    forecast = {
        **NEWS2_ARM,
        "alert_policy": {
            "rules": [{"kind": "forecast_risk", "name": "r6", "horizon_h": 6, "threshold": 0.3}]
        },
    }
    msg = _error(raw(arms=[BASE["arms"][0], forecast]))
    assert "forecast rules ['r6'] need a forecaster" in msg
    bad_rule = {
        **NEWS2_ARM,
        "alert_policy": {"rules": [{"kind": "news2_band", "name": "x", "threshold": 50}]},
    }
    assert "threshold" in _error(raw(arms=[BASE["arms"][0], bad_rule]))


def test_yaml_errors_give_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nseed: 1\narms: [\n  {name: a\n")
    with pytest.raises(SpecError, match=r"bad.yaml is not valid YAML at line \d+, column \d+"):
        load_spec(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="top level must be a mapping"):
        load_spec(path)
    with pytest.raises(SpecError, match="cannot read trial spec"):
        load_spec(tmp_path / "missing.yaml")


def test_the_digest_is_stable_and_follows_the_content() -> None:
    a, b = spec_from(), spec_from()
    assert a.digest() == b.digest()
    assert spec_from(seed=12).digest() != a.digest()


def test_regimens_give_either_a_dose_list_or_dose_and_count() -> None:
    arm = {**BASE["arms"][1], "regimen": {"drug": "diuretic", "doses": [40, 80], "count": 3}}
    assert "either doses (a list) or dose and count" in _error(raw(arms=[BASE["arms"][0], arm]))
    spec = spec_from()
    regimen = spec.arm("abx").regimen  # type: ignore[union-attr]
    first = spec.start
    items = regimen.interventions(first)
    assert len(items) == 6
    assert items[1].at - items[0].at == (items[-1].at - first) / 5
    assert regimen.course_h == 48


def test_the_public_names_exist() -> None:
    import simulators.trials as trials

    assert sorted(trials.__all__) == trials.__all__
    for name in trials.__all__:
        assert getattr(trials, name) is not None
