"""Evaluation metrics: PPV, sensitivity, lead time, alert rates, time to acknowledgement."""

from __future__ import annotations

import pytest

from twin.alerting import Episode, alert_metrics

H = 3_600_000


def test_metrics_follow_their_definitions() -> None:
    episodes = [
        Episode("a", "r", fired_at_ms=10 * H, acknowledged_at_ms=10 * H + 6 * 60_000),  # TP, 20 h
        Episode("a", "r", fired_at_ms=25 * H, notifications=3),  # TP, 5 h
        Episode("a", "r", fired_at_ms=31 * H),  # after onset: not a prediction
        Episode("b", "r", fired_at_ms=5 * H, labels=("false_alarm",)),  # no outcome: FP
        Episode("c", "r", fired_at_ms=1 * H),  # outcome 40 h later: outside 24 h window: FP
        Episode("c", "q", fired_at_ms=30 * H, acknowledged_at_ms=30 * H + 2 * 60_000),  # TP
    ]
    outcomes = {"a": 30 * H, "b": None, "c": 41 * H, "d": 50 * H}
    report = alert_metrics(episodes, outcomes=outcomes, patient_days=8.0, window_h=24)
    r = report["r"]
    assert r["episodes"] == 5
    assert r["notifications"] == 7
    assert r["after_onset"] == 1
    assert r["true_positives"] == 2
    assert r["ppv"] == pytest.approx(2 / 4)
    assert r["sensitivity"] == pytest.approx(1 / 3, abs=1e-4)  # a of {a, c, d}
    assert r["lead_time_h_median"] == pytest.approx(20.0)  # earliest TP of a: 30 h - 10 h
    assert r["alerts_per_patient_day"] == pytest.approx(5 / 8)
    assert r["time_to_ack_min_median"] == pytest.approx(6.0)
    assert r["labelled_false_alarm_fraction"] == 1.0
    assert report["q"]["lead_time_h_median"] == pytest.approx(11.0)
    assert report["all"]["episodes"] == 6
    assert report["all"]["sensitivity"] == pytest.approx(2 / 3, abs=1e-4)


def test_empty_inputs_give_nulls_not_errors() -> None:
    report = alert_metrics([], outcomes={}, patient_days=0)
    assert report["all"]["ppv"] is None
    assert report["all"]["alerts_per_patient_day"] is None
