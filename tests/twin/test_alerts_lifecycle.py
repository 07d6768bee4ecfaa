"""The alert policy: rules, lifecycle, inhibition, silences, commands, serialisation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from twin import TwinState, apply
from twin.alerting import (
    DEFAULT_POLICY,
    AlertBook,
    AlertCommand,
    AlertError,
    AlertPolicy,
    Driver,
    ForecastRisk,
    ForecastRiskRule,
    News2BandRule,
    Notification,
    PatientOverride,
    QsofaRule,
    SustainedRule,
    acknowledge,
    annotate,
    apply_command,
    evaluate,
    load_policy,
    silence,
    unacknowledge,
)
from twin.alerting.book import HISTORY_LIMIT, SILENCE_LIMIT
from twin.events import OxygenTarget, VitalSample, to_ms
from twin.signals import SIGNAL_TO_LOINC, SIGNALS, Signal

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
T0_MS = to_ms(T0)
MIN = 60_000


def state(
    total: int = 0,
    *,
    pid: str = "p1",
    qsofa: int = 0,
    points: dict[str, int] | None = None,
    spo2: tuple[int, float] | None = None,
    scale: int = 1,
    ward: str | None = "ward-7",
) -> TwinState:
    """A twin state with the scores set directly (the policy reads, never recomputes, them)."""
    st = TwinState(pid)
    st.news2_total = total
    st.news2_band = (
        "high" if total >= 7 else "medium" if total >= 5 else "low" if total else "routine"
    )
    st.news2_points = points if points is not None else ({"pulse": min(total, 3)} if total else {})
    st.qsofa_total = qsofa
    st.qsofa_points = {"respiratory_rate": 1, "systolic_bp": 1} if qsofa >= 2 else {}
    if spo2 is not None:
        st.latest[Signal.SPO2] = (spo2[0], 1, spo2[1])
    if scale == 2:
        st.spo2_target = (T0_MS, 1, 2)
    if ward is not None:
        st.encounter_admit = (T0_MS, 1, ward)
    return st


def run(
    totals: list[tuple[int, int]], policy: AlertPolicy, book: AlertBook | None = None
) -> tuple[AlertBook, list[Notification]]:
    """Evaluate (minute, news2 total) steps; returns the final book and every notification."""
    out: list[Notification] = []
    for minute, total in totals:
        book, notes = evaluate(book, state(total), T0_MS + minute * MIN, policy)
        out += notes
    assert book is not None
    return book, out


def muted_book(until_min: int) -> AlertBook:
    """A new book with every rule silenced from T0 for ``until_min`` minutes."""
    book, _ = silence(
        AlertBook(patient_id="p1"),
        rule=None,
        ends_ms=T0_MS + until_min * MIN,
        by="a",
        reason="x",
        at_ms=T0_MS,
    )
    return book


MEDIUM = News2BandRule(
    name="medium", threshold=5, pending_for_s=300, resolve_after_s=600, repeat_interval_s=3600
)
HIGH = News2BandRule(
    name="high",
    threshold=7,
    severity="critical",
    pending_for_s=0,
    resolve_after_s=600,
    repeat_interval_s=3600,
    inhibits=("medium",),
)
POLICY = AlertPolicy(rules=(HIGH, MEDIUM))


# ---- policy -------------------------------------------------------------------------------


def test_default_policy_covers_the_issue_rules() -> None:
    kinds = {r.kind for r in DEFAULT_POLICY.rules}
    assert kinds == {"news2_band", "news2_single_parameter", "qsofa", "forecast_risk", "sustained"}
    assert {r.name for r in DEFAULT_POLICY.rules if r.kind == "news2_band"} == {
        "news2_high",
        "news2_medium",
    }


def test_policy_round_trips_through_json() -> None:
    again = load_policy(DEFAULT_POLICY.model_dump(mode="json"))
    assert again == DEFAULT_POLICY


@pytest.mark.parametrize(
    "bad",
    [
        {"rules": [{"kind": "news2_band", "name": "a", "threshold": 5}] * 2},  # duplicate
        {"rules": [{"kind": "news2_band", "name": "a", "threshold": 5, "inhibits": ["zz"]}]},
        {"rules": [{"kind": "news2_band", "name": "a", "threshold": 5, "inhibits": ["a"]}]},
        {"rules": [{"kind": "qsofa", "name": "a", "threshold": 9}]},
        {
            "rules": [
                {
                    "kind": "sustained",
                    "name": "s",
                    "signal": "spo2",
                    "comparator": "<",
                    "threshold": 90,
                }
            ]
        },  # no pending_for_s: not sustained
        {
            "rules": [
                {
                    "kind": "sustained",
                    "name": "s",
                    "signal": "heart_rate",
                    "comparator": "<",
                    "threshold": "spo2_target",
                    "pending_for_s": 60,
                }
            ]
        },
        {
            "rules": [{"kind": "news2_band", "name": "a", "threshold": 5}],
            "overrides": [{"patient_id": "p", "rules": {"a": {"threshold": 99}}}],
        },
        {
            "rules": [{"kind": "news2_band", "name": "a", "threshold": 5}],
            "overrides": [{"patient_id": "p", "disable": ["nope"]}],
        },
        {"rules": [{"kind": "unknown", "name": "a"}]},
    ],
)
def test_invalid_policies_are_rejected_with_a_reason(bad: dict[str, object]) -> None:
    with pytest.raises(AlertError, match="invalid alert policy"):
        load_policy(bad)


def test_overrides_disable_and_retune_rules_per_patient() -> None:
    policy = AlertPolicy(
        rules=(HIGH, MEDIUM),
        overrides=(
            PatientOverride(
                patient_id="copd", disable=("medium",), rules={"high": {"threshold": 9}}
            ),
        ),
    )
    assert [r.name for r in policy.rules_for("other")] == ["high", "medium"]
    (high,) = policy.rules_for("copd")
    assert isinstance(high, News2BandRule)
    assert high.threshold == 9
    _, notes = evaluate(None, state(8, pid="copd"), T0_MS, policy)
    assert notes == []
    _, notes = evaluate(None, state(8, pid="other"), T0_MS, policy)
    assert [n.rule for n in notes] == ["high"]


# ---- lifecycle ----------------------------------------------------------------------------


def test_pending_must_hold_without_a_break_before_firing() -> None:
    _, notes = run([(0, 5), (3, 5), (4, 2), (5, 5), (9, 5)], POLICY)
    assert notes == []  # the break at minute 4 restarted the pending period
    _, notes = run([(0, 5), (3, 5), (5, 5)], POLICY)
    assert [(n.rule, n.status, n.reason) for n in notes] == [("medium", "firing", "fired")]
    assert notes[0].at_ms == T0_MS + 5 * MIN


def test_hysteresis_resolves_only_after_the_condition_stays_false() -> None:
    steps = [(0, 7), (1, 7), (2, 3), (5, 8), (6, 3), (15, 3), (16, 3)]
    book, notes = run(steps, POLICY)
    assert [(n.status, n.at_ms) for n in notes] == [
        ("firing", T0_MS),
        ("resolved", T0_MS + 16 * MIN),  # false since minute 6, resolve_after 10 min
    ]
    assert book.active == {}
    assert [r.status for r in book.history] == ["resolved"]


def test_repeat_interval_resends_a_firing_alert_and_acknowledgement_stops_it() -> None:
    book, notes = run([(m, 7) for m in range(0, 181, 10)], POLICY)
    fired = [n for n in notes if n.rule == "high"]
    assert [n.reason for n in fired] == ["fired", "repeat", "repeat", "repeat"]
    assert len({n.alert_id for n in fired}) == 1
    assert len({n.notification_id for n in fired}) == 4
    alert = fired[0].alert_id
    book, audit = acknowledge(book, alert, by="nurse.a", at_ms=T0_MS + 181 * MIN)
    assert audit.outcome == "applied"
    assert book.active["high"].status == "acknowledged"
    book, notes = run([(m, 7) for m in range(190, 400, 10)], POLICY, book)
    assert notes == []  # acknowledged: no repeats
    book, notes = run([(400, 0), (411, 0)], POLICY, book)
    assert [(n.status, n.acknowledged) for n in notes] == [("resolved", True)]


def test_unacknowledge_reminds_at_the_next_evaluation() -> None:
    book, notes = run([(0, 7)], POLICY)
    book, _ = acknowledge(book, notes[0].alert_id, by="a", at_ms=T0_MS + MIN)
    book, audit = unacknowledge(book, notes[0].alert_id, by="a", at_ms=T0_MS + 2 * MIN)
    assert audit.outcome == "applied"
    book, notes = run([(3, 7)], POLICY, book)
    assert [n.reason for n in notes] == ["repeat"]


def test_high_inhibits_medium_for_the_same_patient() -> None:
    _, notes = run([(0, 7), (5, 7), (10, 7), (11, 5), (20, 5), (22, 5)], POLICY)
    # medium fired at minute 5 but was muted while high was firing; high resolves at the first
    # evaluation 10 min after its condition failed (minute 22), and in that same evaluation
    # medium, still firing and no longer inhibited, is sent.
    assert [(n.rule, n.status, n.at_ms) for n in notes] == [
        ("high", "firing", T0_MS),
        ("high", "resolved", T0_MS + 22 * MIN),
        ("medium", "firing", T0_MS + 22 * MIN),
    ]


def test_silence_mutes_then_lets_a_still_firing_alert_through() -> None:
    book = AlertBook(patient_id="p1")
    book, audit = silence(
        book, rule="high", ends_ms=T0_MS + 30 * MIN, by="dr.b", reason="procedure", at_ms=T0_MS
    )
    assert audit.outcome == "applied"
    book, notes = run([(m, 7) for m in range(0, 30, 5)], POLICY, book)
    assert notes == []
    book, notes = run([(30, 7)], POLICY, book)
    assert [(n.rule, n.reason) for n in notes] == [("high", "fired")]
    assert book.silences == ()  # expired silences are dropped


def test_an_episode_muted_throughout_never_notifies_not_even_resolved() -> None:
    book = muted_book(until_min=60)
    _, notes = run([(0, 7), (5, 0), (20, 0)], POLICY, book)
    assert notes == []


def test_notifications_are_deterministic_and_evaluation_is_idempotent() -> None:
    a = run([(0, 7), (10, 0), (25, 0)], POLICY)
    b = run([(0, 7), (10, 0), (25, 0)], POLICY)
    assert a == b
    book, _notes = run([(0, 7)], POLICY)
    again, more = evaluate(book, state(7), T0_MS, POLICY)
    assert more == []
    assert again == book


def test_time_never_goes_backwards_in_a_book() -> None:
    book, _ = run([(10, 7)], POLICY)
    book2, notes = evaluate(book, state(7), T0_MS, POLICY)  # an older now
    assert book2.evaluated_at_ms == T0_MS + 10 * MIN
    assert notes == []


def test_every_alert_carries_why_it_fired() -> None:
    st = state(8, qsofa=2, points={"respiratory_rate": 3, "systolic_bp": 2, "pulse": 3})
    st.latest[Signal.RESPIRATORY_RATE] = (T0_MS, 1, 27.0)
    st.latest[Signal.HEART_RATE] = (T0_MS, 2, 140.0)
    policy = AlertPolicy(rules=(HIGH.model_copy(update={"inhibits": ()}), QsofaRule(name="qsofa")))
    _, notes = evaluate(None, st, T0_MS, policy)
    by_rule = {n.rule: n for n in notes}
    high = by_rule["high"].why
    assert high.news2_total == 8
    assert high.news2_points["respiratory_rate"] == 3
    assert high.values == {"respiratory_rate": 27.0, "pulse": 140.0}
    assert "NEWS2 8 (high)" in high.summary
    assert by_rule["qsofa"].why.qsofa_total == 2
    assert by_rule["high"].group_key == "patient:p1"
    assert by_rule["high"].ward == "ward-7"


def test_forecast_rule_fires_with_the_forecast_explanation_and_expires() -> None:
    rule = ForecastRiskRule(name="fc", horizon_h=12, threshold=0.3, max_age_s=3600)
    policy = AlertPolicy(rules=(rule,))
    fc = ForecastRisk(
        made_at_ms=T0_MS,
        risk={6.0: 0.2, 12.0: 0.45},
        model="tft-v3",
        explanation=(Driver(feature="respiratory_rate trend", weight=0.31),),
    )
    book, notes = evaluate(None, state(2), T0_MS, policy, forecast=fc)
    (note,) = notes
    assert note.why.forecast is not None
    assert note.why.forecast.probability == 0.45
    assert note.why.forecast.explanation[0].feature == "respiratory_rate trend"
    assert "tft-v3" in note.why.summary
    # The book keeps the forecast: later evaluations without one still see it ...
    book, notes = evaluate(book, state(2), T0_MS + 30 * MIN, policy)
    assert notes == []
    assert book.active["fc"].false_since_ms is None
    # ... until it is older than max_age_s; then the alert resolves after resolve_after_s.
    book, _ = evaluate(book, state(2), T0_MS + 61 * MIN, policy)
    book, notes = evaluate(book, state(2), T0_MS + 71 * MIN, policy)
    assert [n.status for n in notes] == ["resolved"]


def test_a_quiet_evaluation_still_moves_the_book_along() -> None:
    """Most evaluations find nothing open and nothing holding (the worker's fast path). They
    must still drop silences that ran out and keep the newest forecast for later rules."""
    rule = ForecastRiskRule(name="fc", horizon_h=12, threshold=0.3, max_age_s=3600)
    policy = AlertPolicy(rules=(rule,))
    book = muted_book(until_min=5)
    book, notes = evaluate(book, state(0), T0_MS + 10 * MIN, policy)
    assert (notes, book.silences, book.evaluated_at_ms) == ([], (), T0_MS + 10 * MIN)
    low = ForecastRisk(made_at_ms=T0_MS + 10 * MIN, risk={12.0: 0.1})
    book, notes = evaluate(book, state(0), T0_MS + 11 * MIN, policy, forecast=low)
    assert (notes, book.forecast) == ([], low)
    # The stored forecast is what a later evaluation judges: a rise the model saw coming.
    high = ForecastRisk(made_at_ms=T0_MS + 12 * MIN, risk={12.0: 0.6})
    book, _ = evaluate(book, state(0), T0_MS + 12 * MIN, policy, forecast=high)
    assert book.active["fc"].status == "firing"


def test_sustained_spo2_below_target_uses_the_patients_scale() -> None:
    rule = SustainedRule(
        name="low_spo2",
        signal=Signal.SPO2,
        comparator="<",
        threshold="spo2_target",
        pending_for_s=600,
        max_gap_s=300,
    )
    policy = AlertPolicy(rules=(rule,))

    def go(scale: int, value: float, pol: AlertPolicy = policy) -> list[Notification]:
        book: AlertBook | None = None
        out: list[Notification] = []
        for m in range(0, 12):
            now = T0_MS + m * MIN
            book, notes = evaluate(book, state(spo2=(now, value), scale=scale), now, pol)
            out += notes
        return out

    assert [n.why.threshold for n in go(1, 92)] == [94.0]  # scale 1: below 94 for 10 min
    assert go(2, 90) == []  # scale 2 (target 88-92): 90 is on target
    assert [n.why.threshold for n in go(2, 86)] == [88.0]
    # A per-patient override forces scale 2 before the prescription reaches the twin.
    forced = AlertPolicy(rules=(rule,), overrides=(PatientOverride(patient_id="p1", spo2_scale=2),))
    assert go(1, 90, forced) == []


def test_sustained_rule_needs_fresh_readings() -> None:
    rule = SustainedRule(
        name="low",
        signal=Signal.SPO2,
        comparator="<",
        threshold=90,
        pending_for_s=300,
        max_gap_s=120,
    )
    policy = AlertPolicy(rules=(rule,))
    book = None
    for m in range(0, 10):
        # one reading at minute 0, none after: it goes stale at minute 3
        book, notes = evaluate(book, state(spo2=(T0_MS, 85)), T0_MS + m * MIN, policy)
        assert notes == []


def test_rules_against_a_real_twin() -> None:
    def sample(sig: Signal, value: float, minute: int) -> VitalSample:
        return VitalSample(
            patient_id="p9",
            observed_at=T0 + timedelta(minutes=minute),
            code=SIGNAL_TO_LOINC[sig],
            value=value,
            unit=SIGNALS[sig].unit,
            device_id="d",
            source="test",
        )

    st: TwinState | None = None
    book: AlertBook | None = None
    notes: list[Notification] = []
    st, _ = apply(st, OxygenTarget(patient_id="p9", observed_at=T0, spo2_scale=1))
    for minute in range(0, 60):
        sick = 10 <= minute < 30
        for sig, value in (
            (Signal.HEART_RATE, 135 if sick else 75),
            (Signal.RESPIRATORY_RATE, 26 if sick else 15),
            (Signal.SPO2, 91 if sick else 97),
            (Signal.SYSTOLIC_BP, 118),
            (Signal.TEMPERATURE, 37.0),
        ):
            st, _ = apply(st, sample(sig, value, minute))
        assert st is not None
        book, out = evaluate(book, st, st.watermark_ms)
        notes += out
    fired = [(n.rule, n.status) for n in notes]
    assert ("news2_high", "firing") in fired
    assert ("news2_high", "resolved") in fired
    assert ("news2_medium", "firing") not in fired  # inhibited by high
    assert fired.index(("news2_high", "firing")) < fired.index(("news2_high", "resolved"))


# ---- commands -----------------------------------------------------------------------------


def test_commands_are_audited_and_idempotent() -> None:
    book, notes = run([(0, 7)], POLICY)
    alert = notes[0].alert_id
    cmd = AlertCommand(action="acknowledge", patient_id="p1", alert_id=alert, by="n", at_ms=T0_MS)
    book1, audit1 = apply_command(book, cmd)
    book2, audit2 = apply_command(book1, cmd)
    assert (audit1.outcome, audit2.outcome) == ("applied", "duplicate")
    assert audit1.audit_id == audit2.audit_id
    assert book2 == book1
    assert audit1.by == "n"
    assert audit1.rule == "high"


def test_rejected_commands_say_why() -> None:
    book, notes = run([(0, 7), (1, 0), (12, 0)], POLICY)  # fired and resolved
    alert = notes[0].alert_id
    _, audit = acknowledge(book, alert, by="n", at_ms=T0_MS + 13 * MIN)
    assert audit.outcome == "rejected"
    assert "resolved" in audit.detail
    _, audit = acknowledge(book, "al_nope", by="n", at_ms=T0_MS)
    assert audit.outcome == "rejected"
    # Annotating a resolved alert is the common case (a false alarm is judged afterwards).
    book, audit = annotate(book, alert, by="dr", at_ms=T0_MS, label="false_alarm", note="motion")
    assert audit.outcome == "applied"
    assert book.history[-1].labels == ("false_alarm",)


def test_command_validation() -> None:
    with pytest.raises(ValueError, match="needs alert_id"):
        AlertCommand(action="acknowledge", patient_id="p", by="n", at_ms=0)
    with pytest.raises(ValueError, match="why"):
        AlertCommand(action="silence", patient_id="p", by="n", at_ms=0, ends_ms=10)
    with pytest.raises(ValueError, match="7 days"):
        AlertCommand(
            action="silence", patient_id="p", by="n", at_ms=0, ends_ms=8 * 86_400_000, note="x"
        )


def test_unsilence_removes_a_silence() -> None:
    book = muted_book(until_min=60)
    sid = book.silences[0].silence_id
    cmd = AlertCommand(action="unsilence", patient_id="p1", silence_id=sid, by="a", at_ms=T0_MS)
    book, audit = apply_command(book, cmd)
    assert audit.outcome == "applied"
    _, notes = run([(1, 7)], POLICY, book)
    assert len(notes) == 1


# ---- serialisation and size ---------------------------------------------------------------


def test_book_round_trips_and_rejects_other_versions() -> None:
    fc = ForecastRisk(made_at_ms=T0_MS, risk={12.0: 0.5})
    policy = AlertPolicy(
        rules=(HIGH, MEDIUM, ForecastRiskRule(name="fc", horizon_h=12, threshold=0.3))
    )
    book, _ = evaluate(None, state(7), T0_MS, policy, forecast=fc)
    book, _ = silence(book, rule="medium", ends_ms=T0_MS + MIN, by="a", reason="r", at_ms=T0_MS)
    again = AlertBook.from_bytes(book.to_bytes())
    assert again == book
    assert again.to_bytes() == book.to_bytes()
    data = book.model_dump(mode="json")
    data["schema_version"] = 2
    with pytest.raises(AlertError, match="schema"):
        AlertBook.from_bytes(json.dumps(data))


def test_book_size_is_bounded() -> None:
    book: AlertBook | None = None
    for episode in range(100):
        start = episode * 30
        book, _ = run([(start, 7), (start + 1, 0), (start + 12, 0)], POLICY, book)
        book, _ = silence(
            book,
            rule=None,
            ends_ms=T0_MS + (start + 10_000) * MIN,
            by="a",
            reason="r",
            at_ms=T0_MS + start * MIN,
        )
    assert book is not None
    assert len(book.history) == HISTORY_LIMIT
    assert len(book.silences) == SILENCE_LIMIT
    assert len(book.to_bytes()) < 64_000
    # A book stored by a version that kept more history is trimmed by its next evaluation,
    # a quiet one included.
    longer = AlertBook(patient_id="p1", history=book.history * 2)
    trimmed, _ = evaluate(longer, state(0), T0_MS + 10**6 * MIN, POLICY)
    assert trimmed.history == book.history


def test_book_and_state_must_match() -> None:
    book = AlertBook(patient_id="other")
    with pytest.raises(AlertError):
        evaluate(book, state(7), T0_MS, POLICY)
