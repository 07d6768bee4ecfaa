"""Running trials: identical results for any number of workers, resumable, guarded outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trialhelpers import BASE, NEWS2_ARM, spec_from

from simulators.trials import ResumeError, TrialError, analyse, load_run, plan_trial, run_trial
from simulators.trials.runner import RECORDS, shard_path

SPEC = spec_from(
    days=0.75,
    population={"size": 6, "home_fraction": 0.0, "risk": {"sepsis": 150}},
    design={"kind": "paired", "control": "none", "shard_size": 3},
    arms=[*BASE["arms"], NEWS2_ARM],
)


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    run = run_trial(SPEC, tmp_path_factory.mktemp("serial"), workers=1)
    assert run is not None
    return run.records


def test_results_are_identical_for_one_and_two_workers(
    serial: pd.DataFrame, tmp_path: Path
) -> None:
    run = run_trial(SPEC, tmp_path, workers=2)
    assert run is not None
    pd.testing.assert_frame_equal(run.records, serial)
    assert len(run.plan.shards) == 6
    assert (tmp_path / RECORDS).exists()
    assert (tmp_path / "trial.json").exists()


def test_records_are_plausible(serial: pd.DataFrame) -> None:
    assert set(serial["arm"]) == {"none", "abx", "news2"}
    assert (serial.groupby("arm").size() == 6).all()
    assert (serial["followup_h"] <= 0.75 * 24 + 1e-9).all()
    assert (serial.loc[serial["died"], "critical"]).all()  # death lies beyond the critical event
    assert (
        serial.loc[serial["critical"], "to_critical_h"]
        <= serial.loc[serial["critical"], "followup_h"]
    ).all()
    assert (serial.loc[serial["treated"], "to_treatment_h"] >= 0).all()
    assert (serial.loc[serial["overtreated"], "episode"] == False).all()  # noqa: E712
    none = serial[serial["arm"] == "none"]
    assert (none["trial_doses"] == 0).all()
    assert (none["alerts"] == -1).all()
    news2 = serial[serial["arm"] == "news2"]
    assert (news2["alerts"] >= 0).all()
    assert news2["episode"].sum() >= 2
    # Under the paired design the twins, covariates and episodes are shared by every arm.
    by_arm = {a: df.set_index("twin") for a, df in serial.groupby("arm")}
    for col in ("age", "sex", "setting", "onset_h"):
        pd.testing.assert_series_equal(by_arm["none"][col], by_arm["news2"][col])


def test_an_interrupted_run_resumes_to_the_same_result(
    serial: pd.DataFrame, tmp_path: Path
) -> None:
    plan = plan_trial(SPEC)
    first = [s.key for s in plan.shards[::2]]
    assert run_trial(SPEC, tmp_path, only=first) is None  # stopped part-way
    done = {
        s.key: shard_path(tmp_path, s).stat().st_mtime_ns for s in plan.shards if s.key in first
    }
    with pytest.raises(TrialError, match="shards not run yet"):
        load_run(tmp_path)
    seen: list[int] = []
    run = run_trial(SPEC, tmp_path, workers=2, progress=seen.append)
    assert run is not None
    pd.testing.assert_frame_equal(run.records, serial)
    for s in plan.shards:  # the finished shards were kept, not recomputed
        if s.key in done:
            assert shard_path(tmp_path, s).stat().st_mtime_ns == done[s.key]
    assert sum(seen) == 18
    assert seen[0] == 9
    pd.testing.assert_frame_equal(load_run(tmp_path).records, serial)


def test_another_spec_is_refused_unless_fresh(tmp_path: Path) -> None:
    small = spec_from(days=0.25, population={"size": 4, "home_fraction": 0.0})
    assert run_trial(small, tmp_path) is not None
    other = spec_from(days=0.25, seed=99, population={"size": 4, "home_fraction": 0.0})
    with pytest.raises(ResumeError, match="another trial spec"):
        run_trial(other, tmp_path)
    run = run_trial(other, tmp_path, fresh=True)
    assert run is not None
    assert json.loads((tmp_path / "trial.json").read_text())["digest"] == other.digest()
    assert run.records["patient_id"].str.startswith("sim99-").all()


def test_randomised_runs_each_twin_once(tmp_path: Path) -> None:
    spec = spec_from(
        days=0.5,
        population={"size": 30, "home_fraction": 0.2},
        design={"kind": "randomised", "control": "none", "strata": ["setting"]},
    )
    run = run_trial(spec, tmp_path)
    assert run is not None
    assert run.records["twin"].is_unique
    assert len(run.records) == 30
    np.testing.assert_array_equal(
        np.sort(run.records.loc[run.records["arm"] == "abx", "twin"]), run.plan.allocation["abx"]
    )


def test_glucose_time_in_range_for_cgm_wearers(tmp_path: Path) -> None:
    insulin = {
        "name": "insulin",
        "kind": "schedule",
        "start_h": 2,
        "regimen": {"drug": "insulin", "dose": 8, "count": 2, "every_h": 4},
    }
    spec = spec_from(
        days=0.5,
        population={"size": 6, "include": {"require": ["diabetes"]}},
        endpoints={"condition": "hypoglycaemia", "glucose_tir": True},
        arms=[BASE["arms"][0], insulin],
    )
    run = run_trial(spec, tmp_path)
    assert run is not None
    rec = run.records
    assert (rec["cgm_readings"] > 100).all()  # every twin wears a CGM: 12 h of 5-minute readings
    assert rec["tir"].between(0, 1).all()
    by_arm = rec.set_index(["arm", "twin"])["tir"]
    # Extra insulin pulls glucose down into (and below) the range: TIR changes for someone.
    assert (by_arm["insulin"] != by_arm["none"]).any()
    result = analyse(spec, rec, run.plan.summary())
    assert result["arms"]["none"]["tir"]["twins"] == 6
    assert "tir" in result["comparisons"][0]
