"""Policies decide from the observed stream only, and the past they saw stays fixed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pytest

from simulators import (
    Drug,
    Intervention,
    Observation,
    Policy,
    PolicyError,
    Record,
    RecordKind,
    SimulationConfig,
    simulate,
    stream,
)
from simulators.conditions import CONDITION_CODE, Condition

CFG = SimulationConfig(
    patients=10, days=1, seed=43, home_fraction=0.0, usual_care=False, risk={"sepsis": 150.0}
)


@dataclass
class FeverPolicy:
    """Antibiotics (every 8 h) once a patient's observed HR > 100 and temperature > 38.0."""

    interval: timedelta = timedelta(hours=1)
    seen: list[Observation] = field(default_factory=list)
    started: dict[str, datetime] = field(default_factory=dict)
    hr: dict[str, float] = field(default_factory=dict)
    temp: dict[str, float] = field(default_factory=dict)

    def decide(self, observation: Observation) -> Iterable[Intervention]:
        self.seen.append(observation)
        pid = observation.patient_id
        for r in observation.records:
            if r.kind is RecordKind.SAMPLE and r.payload.get("quality") != "artifact":
                if r.payload["signal"] == "heart_rate":
                    self.hr[pid] = r.payload["value"]
                elif r.payload["signal"] == "temperature":
                    self.temp[pid] = r.payload["value"]
        if pid in self.started or self.hr.get(pid, 0) <= 100 or self.temp.get(pid, 0) <= 38.0:
            return []
        self.started[pid] = observation.now
        return [
            Intervention(observation.now + timedelta(hours=8 * k), Drug.ANTIBIOTIC)
            for k in range(4)
        ]


def test_policy_sees_only_delivered_records_in_order() -> None:
    policy = FeverPolicy()
    assert isinstance(policy, Policy)
    list(simulate(CFG, policy=policy))
    by_patient: dict[str, list[Observation]] = {}
    for obs in policy.seen:
        by_patient.setdefault(obs.patient_id, []).append(obs)
    assert len(by_patient) == CFG.patients
    for observations in by_patient.values():
        assert len(observations) == 24
        prev = CFG.start
        for obs in observations:
            assert isinstance(obs, Observation)
            for r in obs.records:
                assert isinstance(r, Record)  # records, never latent state or labels
                assert prev < r.received_at <= obs.now or (
                    prev == CFG.start and r.received_at <= obs.now
                )
            prev = obs.now
    assert policy.started  # the rule fired for someone


def test_policy_changes_the_future_not_the_delivered_past() -> None:
    policy = FeverPolicy()
    with_policy = list(stream(CFG, policy=policy))
    without = list(stream(CFG))
    assert policy.started
    for pid, decided in policy.started.items():
        a = [r.payload for r in with_policy if r.patient_id == pid and r.received_at <= decided]
        b = [r.payload for r in without if r.patient_id == pid and r.received_at <= decided]
        assert a
        assert a == b
        later_a = [
            r.payload for r in with_policy if r.patient_id == pid and r.received_at > decided
        ]
        later_b = [r.payload for r in without if r.patient_id == pid and r.received_at > decided]
        assert later_a != later_b  # the antibiotic changed what came after


def test_policy_with_antibiotics_beats_no_treatment() -> None:
    cfg = SimulationConfig(
        patients=16, days=1.5, seed=47, home_fraction=0.0, usual_care=False, risk={"sepsis": 150.0}
    )
    peaks = {}
    for arm, policy in (("none", None), ("policy", FeverPolicy())):
        chunks = list(simulate(cfg, policy=policy))
        sep = CONDITION_CODE[Condition.SEPSIS]
        peaks[arm] = np.concatenate(
            [c.latent.peak[c.latent.started & (c.episodes.condition == sep)] for c in chunks]
        )
    assert peaks["none"].size >= 5
    assert peaks["policy"].mean() < peaks["none"].mean()


@dataclass
class PastPolicy:
    interval: timedelta = timedelta(hours=2)

    def decide(self, observation: Observation) -> Iterable[Intervention]:
        return [Intervention(observation.now - timedelta(minutes=1), Drug.OXYGEN, 2.0)]


def test_an_intervention_in_the_past_is_refused() -> None:
    with pytest.raises(PolicyError):
        list(simulate(SimulationConfig(patients=2, days=0.25, seed=1), policy=PastPolicy()))
