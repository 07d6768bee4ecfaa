"""Arm policies: monitoring arms act only on what the pipeline outputs; forecaster plug."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trialhelpers import BASE, NEWS2_ARM, spec_from

from simulators import Intervention, Observation, Record, SimulationConfig, simulate
from simulators.trials import (
    MonitoringPolicy,
    News2TrendRisk,
    TrialError,
    load_risk_model,
    run_trial,
)
from simulators.trials.spec import ForecasterSpec, MonitoringArm
from twin import TwinState, apply_many

CFG = SimulationConfig(
    patients=8, days=0.75, seed=43, home_fraction=0.0, usual_care=False, risk={"sepsis": 300.0}
)
ALERTED = [6, 7]  # twins of CFG whose NEWS2 reaches 5 (at 9 h and 14 h)
ENDPOINTS = ["episode", "onset_h", "critical", "to_critical_h", "died", "treated", "trial_doses"]


class SpyRisk:
    """A risk model that records what it is given: twin states and forecast times only."""

    name = "spy"
    horizons_h = (6.0,)

    def __init__(self) -> None:
        self.calls: list[tuple[list[object], list[object]]] = []

    def risk(self, states: Sequence[TwinState], at_ms: Sequence[int]) -> np.ndarray:
        self.calls.append((list(states), list(at_ms)))
        return np.array([[0.9 if s.news2_total >= 5 else 0.0] for s in states])


class Inspected(MonitoringPolicy):
    """Checks that every decision is made from ``Observation``s of delivered ``Record``s."""

    seen = 0

    def decide_batch(self, observations: Sequence[Observation]) -> list[list[Intervention]]:
        for obs in observations:
            assert type(obs) is Observation
            assert all(type(r) is Record for r in obs.records)
            assert all(r.received_at <= obs.now for r in obs.records)
            self.seen += len(obs.records)
        return super().decide_batch(observations)


def _arm(**changes: object) -> MonitoringArm:
    return MonitoringArm.model_validate({**NEWS2_ARM, **changes})


def test_the_forecaster_sees_twin_states_and_the_policy_sees_records() -> None:
    arm = _arm(
        forecaster={"kind": "news2_trend"},
        alert_policy={
            "rules": [{"kind": "forecast_risk", "name": "r6", "horizon_h": 6, "threshold": 0.5}]
        },
    )
    spy = SpyRisk()
    policy = Inspected(arm, CFG.seed, CFG.start, spy)
    chunks = list(simulate(CFG, indices=ALERTED, policy=policy, signals=False))
    assert policy.seen > 5_000
    assert spy.calls
    for states, at in spy.calls:
        assert all(type(s) is TwinState for s in states)
        assert all(type(t) is int and t % 900_000 == 0 for t in at)  # ForecastDue slots
    assert policy.forecasts == sum(len(s) for s, _ in spy.calls)
    logs = policy.logs.values()
    assert sum(log.alerts for log in logs) >= 1
    assert sum(log.courses for log in logs) >= 1
    given = np.concatenate([c.latent.doses.source for c in chunks])
    courses = sum(log.courses for log in logs)
    # Every policy dose comes from a course (doses past the horizon are not given).
    assert courses <= (given == 1).sum() <= len(arm.regimen.amounts()) * courses


def test_an_arm_whose_trigger_cannot_fire_equals_no_treatment(tmp_path: Path) -> None:
    never = {
        **NEWS2_ARM,
        "name": "never",
        "alert_policy": {
            "rules": [
                {
                    "kind": "sustained",
                    "name": "hr_400",
                    "signal": "heart_rate",
                    "comparator": ">",
                    "threshold": 400,
                    "pending_for_s": 600,
                }
            ]
        },
    }
    spec = spec_from(
        days=0.75,
        population={"size": 4, "home_fraction": 0.0, "risk": {"sepsis": 150}},
        arms=[BASE["arms"][0], never],
    )
    run = run_trial(spec, tmp_path)
    assert run is not None
    rec = run.records
    a = rec[rec["arm"] == "never"].set_index("twin")
    b = rec[rec["arm"] == "none"].set_index("twin")
    assert (a["alerts"] == 0).all()
    assert (a["courses"] == 0).all()
    pd.testing.assert_frame_equal(a[ENDPOINTS], b[ENDPOINTS])


def test_decide_batch_decides_exactly_as_decide() -> None:
    arm = _arm(response_delay_min=0)

    class PerPatient:
        def __init__(self, inner: MonitoringPolicy) -> None:
            self.inner = inner
            self.interval = inner.interval

        def decide(self, observation: Observation) -> Iterable[Intervention]:
            return self.inner.decide(observation)

    batched = MonitoringPolicy(arm, CFG.seed, CFG.start)
    single = MonitoringPolicy(arm, CFG.seed, CFG.start)
    a = list(simulate(CFG, indices=ALERTED, policy=batched, signals=False))
    b = list(simulate(CFG, indices=ALERTED, policy=PerPatient(single), signals=False))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.latent.doses.minute, y.latent.doses.minute)
        np.testing.assert_array_equal(x.latent.critical_min, y.latent.critical_min)
    assert batched.logs == single.logs
    assert any(log.courses for log in batched.logs.values())


def test_adherence_decides_which_pages_are_answered() -> None:
    runs = [MonitoringPolicy(_arm(adherence=0.5), CFG.seed, CFG.start) for _ in range(2)]
    for p in runs:
        list(simulate(CFG, indices=ALERTED, policy=p, signals=False))
    logs = runs[0].logs.values()
    triggers = sum(log.triggers for log in logs)
    responses = sum(log.responses for log in logs)
    assert 0 < responses < triggers  # some pages answered, some not (then they repeat)
    assert sum(log.courses for log in logs) <= responses
    assert runs[0].logs == runs[1].logs  # seeded: the same draws every run


def test_a_signal_rule_arm_acts_on_observed_fever(tmp_path: Path) -> None:
    fever = {
        "name": "fever",
        "kind": "signal_rule",
        "when": [
            {"signal": "heart_rate", "op": ">", "value": 100},
            {"signal": "temperature", "op": ">", "value": 38.0},
        ],
        "review_every_min": 30,
        "response_delay_min": 0,
        "regimen": {"drug": "antibiotic", "count": 3, "every_h": 8},
    }
    spec = spec_from(
        days=1,
        population={"size": 6, "home_fraction": 0.0, "risk": {"sepsis": 150}},
        arms=[BASE["arms"][0], fever],
    )
    run = run_trial(spec, tmp_path)
    assert run is not None
    rec = run.records[run.records["arm"] == "fever"]
    assert rec["courses"].sum() >= 1
    assert ((rec["trial_doses"] > 0) <= (rec["courses"] > 0)).all()
    treated = rec[rec["courses"] > 0]
    assert (treated["first_course_h"] >= treated["onset_h"]).all()  # fever follows the onset


def test_the_stand_in_forecaster_reads_only_the_twin() -> None:
    model = News2TrendRisk()
    empty = TwinState("p")
    assert model.risk([empty], [0]).tolist() == [[0.0] * len(model.horizons_h)]
    chunk = next(iter(simulate(CFG)))
    view = chunk.records(0)
    events = [e for e in (r.to_event() for r in view.between(-1, 6 * 3_600_000)) if e is not None]
    state, _ = apply_many(None, events)
    assert state is not None
    p = model.risk([state], [state.watermark_ms])[0]
    assert np.all(np.diff(p) > 0)
    assert np.all((p > 0) & (p < 1))


def test_a_missing_tft_checkpoint_falls_back_only_when_allowed(tmp_path: Path) -> None:
    spec = ForecasterSpec(kind="tft", path=str(tmp_path / "none"), fallback="news2_trend")
    model, note = load_risk_model(spec)
    assert isinstance(model, News2TrendRisk)
    assert "could not be loaded" in note
    assert str(tmp_path / "none") in note
    with pytest.raises(TrialError, match="cannot load the TFT checkpoint"):
        load_risk_model(ForecasterSpec(kind="tft", path=str(tmp_path / "none")))


SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "default"


def test_the_tft_runs_in_the_loop() -> None:
    """The shipped checkpoint (or VITALTWIN_TFT_CHECKPOINT) forecasts inside a trial arm."""
    path = os.environ.get("VITALTWIN_TFT_CHECKPOINT", str(SHIPPED_CHECKPOINT))
    spec = ForecasterSpec(kind="tft", path=path)
    model, note = load_risk_model(spec, threads=1)
    assert note.startswith("tft:")
    arm = _arm(
        forecaster=spec.model_dump(),
        alert_policy={
            "rules": [{"kind": "forecast_risk", "name": "r6", "horizon_h": 6, "threshold": 0.3}]
        },
    )
    policy = MonitoringPolicy(arm, CFG.seed, CFG.start, model)
    list(simulate(CFG, indices=ALERTED[:2], policy=policy, signals=False))
    assert policy.forecasts > 0
    assert timedelta(minutes=arm.review_every_min) == policy.interval
