"""Lifecycle properties that must hold for every input sequence (hypothesis).

- an alert is sent as "fired" at most once per episode, and re-sent only after its repeat
  interval (acknowledgements only ever remove repeats);
- a resolved notification follows that episode's firing notification, and ends the episode;
- no firing notification goes out for a rule while an inhibiting alert of the same patient
  is firing, nor while a silence covers it;
- the book round-trips through bytes exactly, and stays small, at every step.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from twin import TwinState
from twin.alerting import (
    AlertBook,
    AlertPolicy,
    News2BandRule,
    Notification,
    QsofaRule,
    acknowledge,
    evaluate,
    silence,
)
from twin.alerting.book import FIRING_STATUSES

T0_MS = 1_767_600_000_000
MIN = 60_000

POLICY = AlertPolicy(
    rules=(
        News2BandRule(
            name="high",
            threshold=7,
            pending_for_s=0,
            resolve_after_s=180,
            repeat_interval_s=600,
            inhibits=("medium",),
            severity="critical",
        ),
        News2BandRule(
            name="medium",
            threshold=5,
            pending_for_s=120,
            resolve_after_s=120,
            repeat_interval_s=300,
        ),
        QsofaRule(name="qsofa", pending_for_s=60, resolve_after_s=0, repeat_interval_s=None),
    )
)
REPEAT_MS = {
    r.name: None if r.repeat_interval_s is None else r.repeat_interval_s * 1000
    for r in POLICY.rules
}
INHIBITORS = {r.name: {i.name for i in POLICY.rules if r.name in i.inhibits} for r in POLICY.rules}


def twin(total: int, qsofa: int) -> TwinState:
    st_ = TwinState("p")
    st_.news2_total = total
    st_.news2_points = {"pulse": min(total, 3)} if total else {}
    st_.qsofa_total = qsofa
    return st_


step = st.one_of(
    st.tuples(
        st.just("eval"),
        st.integers(min_value=0, max_value=12),  # minutes since the previous step
        st.sampled_from([0, 3, 5, 6, 7, 9]),
        st.integers(min_value=0, max_value=3),
    ),
    st.tuples(st.just("ack"), st.integers(0, 5), st.just(0), st.just(0)),
    st.tuples(
        st.just("silence"),
        st.integers(1, 40),  # minutes of silence
        st.sampled_from([0, 1, 2, 3]),  # rule index (3: every rule)
        st.just(0),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=60))
def test_lifecycle_properties(steps: list[tuple[str, int, int, int]]) -> None:
    book = AlertBook(patient_id="p")
    now = T0_MS
    sent: dict[str, list[Notification]] = defaultdict(list)
    names = [r.name for r in POLICY.rules]
    for kind, a, b, c in steps:
        if kind == "ack":
            firing = [r for r in book.active.values() if r.status == "firing"]
            if firing:
                book, audit = acknowledge(book, firing[a % len(firing)].alert_id, by="n", at_ms=now)
                assert audit.outcome == "applied"
            continue
        if kind == "silence":
            rule = None if b == 3 else names[b]
            book, _ = silence(book, rule=rule, ends_ms=now + a * MIN, by="n", reason="r", at_ms=now)
            continue
        now += a * MIN
        silences_before = book.silences
        book, notes = evaluate(book, twin(b, c), now, POLICY)
        firing_now = {n for n, r in book.active.items() if r.status in FIRING_STATUSES}
        for n in notes:
            history = sent[n.alert_id]
            assert not any(h.status == "resolved" for h in history), "nothing after resolved"
            if n.status == "resolved":
                assert any(h.status == "firing" for h in history), "resolved follows firing"
            else:
                assert not (INHIBITORS[n.rule] & firing_now), "inhibited alert was sent"
                assert not any(s.mutes(n.rule, now) for s in silences_before), "silenced"
                if history:
                    assert n.reason == "repeat"
                    gap = n.at_ms - history[-1].at_ms
                    limit = REPEAT_MS[n.rule]
                    assert limit is not None, "a rule without repeats repeated"
                    assert gap >= limit, "repeat before its interval"
                else:
                    assert n.reason == "fired"
            history.append(n)
        assert AlertBook.from_bytes(book.to_bytes()) == book
        assert len(book.to_bytes()) < 32_000


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10), st.sampled_from([0, 5, 7])), max_size=40))
def test_replaying_the_same_inputs_gives_the_same_notifications(
    steps: list[tuple[int, int]],
) -> None:
    def go() -> tuple[AlertBook | None, list[Notification]]:
        book: AlertBook | None = None
        out: list[Notification] = []
        now = T0_MS
        for dt, total in steps:
            now += dt * MIN
            book, notes = evaluate(book, twin(total, 0), now, POLICY)
            out += notes
        return book, out

    assert go() == go()
