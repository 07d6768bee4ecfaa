"""How good the alerts are: alerts per patient-day, PPV, sensitivity, lead time, time to ack.

Definitions (the same for the benchmark, the CLI's ``stats`` and any report):

- an *episode* is one alert id (fired once, however many repeats);
- an episode is a *true positive* when its patient has an outcome (deterioration onset) and
  it fired within ``window_h`` hours before the onset; episodes fired after the onset are not
  predictions and are counted apart (``after_onset``), outside PPV;
- PPV = true positives / episodes fired while the patient had no onset yet;
- sensitivity = patients with an outcome and at least one true positive / patients with an
  outcome;
- lead time = onset - the patient's earliest true-positive episode of that rule (hours);
- alerts per patient-day = episodes / patient-days (``notifications_per_patient_day``
  counts every message, repeats included: what a phone actually receives).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_H_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Episode:
    patient_id: str
    rule: str
    fired_at_ms: int
    notifications: int = 1
    acknowledged_at_ms: int | None = None
    labels: tuple[str, ...] = ()


def alert_metrics(
    episodes: Iterable[Episode],
    *,
    outcomes: Mapping[str, int | None],
    patient_days: float,
    window_h: float = 24.0,
) -> dict[str, Any]:
    """Metrics per rule and over all rules (key ``"all"``); JSON-ready."""
    eps = list(episodes)
    rules = sorted({e.rule for e in eps})
    report = {
        rule: _metrics([e for e in eps if e.rule == rule], outcomes, patient_days, window_h)
        for rule in rules
    }
    report["all"] = _metrics(eps, outcomes, patient_days, window_h)
    return report


def _metrics(
    eps: list[Episode], outcomes: Mapping[str, int | None], patient_days: float, window_h: float
) -> dict[str, Any]:
    window = window_h * _H_MS
    tp = after = before = 0
    first_tp: dict[str, int] = {}
    for e in eps:
        onset = outcomes.get(e.patient_id)
        if onset is not None and e.fired_at_ms > onset:
            after += 1
            continue
        before += 1
        if onset is not None and onset - e.fired_at_ms <= window:
            tp += 1
            first_tp[e.patient_id] = min(first_tp.get(e.patient_id, e.fired_at_ms), e.fired_at_ms)
    positives = [p for p, onset in outcomes.items() if onset is not None]
    leads = sorted((outcomes[p] or 0) - t for p, t in first_tp.items())
    acks = sorted(
        e.acknowledged_at_ms - e.fired_at_ms for e in eps if e.acknowledged_at_ms is not None
    )
    labelled = [e for e in eps if e.labels]
    false_alarms = sum(1 for e in labelled if "false_alarm" in e.labels)
    days = patient_days if patient_days > 0 else float("nan")
    return {
        "episodes": len(eps),
        "notifications": sum(e.notifications for e in eps),
        "alerts_per_patient_day": _r(len(eps) / days),
        "notifications_per_patient_day": _r(sum(e.notifications for e in eps) / days),
        "true_positives": tp,
        "after_onset": after,
        "ppv": _r(tp / before) if before else None,
        "sensitivity": _r(len(first_tp) / len(positives)) if positives else None,
        "lead_time_h_median": _r(statistics.median(leads) / _H_MS) if leads else None,
        "lead_time_h_p25": _r(_quantile(leads, 0.25) / _H_MS) if leads else None,
        "lead_time_h_p75": _r(_quantile(leads, 0.75) / _H_MS) if leads else None,
        "time_to_ack_min_median": _r(statistics.median(acks) / 60_000) if acks else None,
        "labelled": len(labelled),
        "labelled_false_alarm_fraction": _r(false_alarms / len(labelled)) if labelled else None,
    }


def _quantile(sorted_values: list[int], q: float) -> float:
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _r(x: float) -> float | None:
    return None if x != x else round(x, 4)  # NaN (no patient-days) -> None
