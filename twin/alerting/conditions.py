"""Rule conditions over a twin state: does a rule hold now, and the evidence (``Why``) if so.

``holds`` is called for every rule on every evaluation, so it only compares numbers the twin
already computed; ``explain`` builds the ``Why`` and runs only when an alert fires, repeats or
resolves. Both read NEWS2 and qSOFA as the twin scored them at its watermark (stale inputs
already excluded there), so an alert agrees with the chart a nurse would fill in.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

from twin.alerting.book import ForecastRisk, ForecastWhy, Why
from twin.alerting.policy import (
    SPO2_TARGET_LOW,
    ForecastRiskRule,
    News2BandRule,
    News2SingleParameterRule,
    QsofaRule,
    Rule,
    SustainedRule,
)
from twin.signals import Signal
from twin.state import TwinState

# NEWS2 parameter names (as in ``TwinState.news2_points``) and the signals they score.
_PARAMETER_SIGNAL: dict[str, Signal] = {
    "respiratory_rate": Signal.RESPIRATORY_RATE,
    "spo2": Signal.SPO2,
    "systolic_bp": Signal.SYSTOLIC_BP,
    "pulse": Signal.HEART_RATE,
    "consciousness": Signal.CONSCIOUSNESS,
    "temperature": Signal.TEMPERATURE,
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything a condition may read, at one evaluation time."""

    state: TwinState
    now_ms: int
    forecast: ForecastRisk | None
    spo2_scale: int


def holds(rule: Rule, inp: Inputs) -> bool:
    st = inp.state
    if isinstance(rule, News2BandRule):
        return st.news2_total >= rule.threshold
    if isinstance(rule, News2SingleParameterRule):
        return any(p >= rule.points for p in st.news2_points.values())
    if isinstance(rule, QsofaRule):
        return st.qsofa_total >= rule.threshold
    if isinstance(rule, ForecastRiskRule):
        p = _forecast_probability(rule, inp)
        return p is not None and p >= rule.threshold
    return _sustained_value(rule, inp) is not None


def sustained_threshold(rule: SustainedRule, spo2_scale: int) -> float:
    if rule.threshold == "spo2_target":
        return SPO2_TARGET_LOW[spo2_scale]
    return rule.threshold


def _sustained_value(rule: SustainedRule, inp: Inputs) -> float | None:
    """The latest reading if it is fresh and beyond the threshold, else None."""
    reading = inp.state.latest.get(rule.signal)
    if reading is None or inp.now_ms - reading[0] > rule.max_gap_s * 1000:
        return None
    value = reading[2]
    limit = sustained_threshold(rule, inp.spo2_scale)
    return value if _COMPARE[rule.comparator](value, limit) else None


def _forecast_probability(rule: ForecastRiskRule, inp: Inputs) -> float | None:
    fc = inp.forecast
    if fc is None or fc.outcome != rule.outcome:
        return None
    if inp.now_ms - fc.made_at_ms > rule.max_age_s * 1000:
        return None
    return fc.risk.get(float(rule.horizon_h))


def explain(rule: Rule, inp: Inputs) -> Why:
    """The evidence for ``rule`` now (whether or not it holds: a resolve needs it too)."""
    st = inp.state
    values: dict[str, float] = {}
    observed: dict[str, int] = {}
    for param in st.news2_points:
        sig = _PARAMETER_SIGNAL.get(param)
        reading = None if sig is None else st.latest.get(sig)
        if reading is not None:
            values[param], observed[param] = reading[2], reading[0]
    if "air_or_oxygen" in st.news2_points and st.oxygen is not None:
        values["air_or_oxygen"] = 1.0 if st.oxygen[2] else 0.0
    threshold: float | None = None
    forecast_why: ForecastWhy | None = None
    if isinstance(rule, News2BandRule):
        threshold = rule.threshold
        summary = f"NEWS2 {st.news2_total} ({st.news2_band}), threshold {rule.threshold}"
    elif isinstance(rule, News2SingleParameterRule):
        threshold = rule.points
        high = sorted(k for k, p in st.news2_points.items() if p >= rule.points)
        parts = [f"{k} {values[k]:g}" if k in values else k for k in high]
        summary = f"NEWS2 parameter scoring {rule.points}: " + (", ".join(parts) or "none now")
    elif isinstance(rule, QsofaRule):
        threshold = rule.threshold
        met = sorted(k for k, p in st.qsofa_points.items() if p)
        summary = f"qSOFA {st.qsofa_total} ({', '.join(met) or 'no criteria'} met)"
    elif isinstance(rule, ForecastRiskRule):
        threshold = rule.threshold
        p = _forecast_probability(rule, inp)
        fc = inp.forecast
        if p is not None and fc is not None:
            forecast_why = ForecastWhy(
                horizon_h=rule.horizon_h,
                probability=p,
                threshold=rule.threshold,
                outcome=rule.outcome,
                model=fc.model,
                made_at_ms=fc.made_at_ms,
                explanation=fc.explanation,
            )
            summary = (
                f"P({rule.outcome} within {rule.horizon_h:g} h) = {p:.2f},"
                f" threshold {rule.threshold:.2f} (model {fc.model})"
            )
        else:
            summary = f"no current forecast of {rule.outcome} within {rule.horizon_h:g} h"
    else:
        threshold = sustained_threshold(rule, inp.spo2_scale)
        reading = st.latest.get(rule.signal)
        name = rule.signal.value
        if reading is not None:
            values[name], observed[name] = reading[2], reading[0]
            if _COMPARE[rule.comparator](reading[2], threshold):
                held = f"held {rule.pending_for_s // 60} min"
                summary = f"{name} {reading[2]:g} {rule.comparator} {threshold:g}, {held}"
            else:
                summary = f"{name} {reading[2]:g}, no longer {rule.comparator} {threshold:g}"
        else:
            summary = f"no {name} reading"
        if rule.threshold == "spo2_target":
            summary += f" (SpO2 scale {inp.spo2_scale} target)"
    return Why(
        rule=rule.name,
        kind=rule.kind,
        summary=summary,
        values=values,
        observed_at_ms=observed,
        news2_total=st.news2_total,
        news2_band=st.news2_band,
        news2_points=dict(st.news2_points),
        news2_missing=st.news2_missing,
        qsofa_total=st.qsofa_total,
        spo2_scale=inp.spo2_scale,
        threshold=threshold,
        forecast=forecast_why,
    )
