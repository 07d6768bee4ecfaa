"""Properties of the transition that must hold for every stream (hypothesis).

- idempotence: re-delivered events change nothing;
- permutation invariance: any arrival order within the lateness bound gives the in-order state;
- serialisation round trip: bytes -> state -> bytes is exact, and a restored twin behaves alike;
- bounded size: a twin does not grow with the length of its stream;
- apply == apply_many == apply_runs (each of its yields, and the state it was given kept).
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin import TwinConfig, TwinState, apply, apply_many, apply_runs
from twin.events import (
    ConsciousnessAssessment,
    Event,
    LabResult,
    MedicationAction,
    MedicationClass,
    MedicationEvent,
    OxygenTherapy,
    VitalSample,
)
from twin.signals import SIGNAL_TO_LOINC, SIGNALS, Signal

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CFG = TwinConfig(lateness_s=600, bin_s=300, window_bins=24, forecast_every_s=900)
LATENESS_MS = CFG.lateness_s * 1000

VITALS = [
    (Signal.HEART_RATE, 10, 320),  # ranges straddle the plausibility limits: artifacts happen
    (Signal.RESPIRATORY_RATE, 1, 50),
    (Signal.SPO2, 70, 104),
    (Signal.TEMPERATURE, 33, 42),
    (Signal.SYSTOLIC_BP, 60, 230),
    (Signal.GLUCOSE, 30, 400),
    (Signal.STEPS, 0, 150),
    (Signal.DIASTOLIC_BP, 30, 120),
]
LABS = [(Signal.LACTATE, 0.5, 12), (Signal.WBC, 1, 40), (Signal.CRP, 0, 300)]


@st.composite
def events(draw: st.DrawFn) -> Event:
    seconds = draw(st.integers(min_value=0, max_value=6 * 3600))
    at = T0 + timedelta(seconds=seconds)
    kind = draw(st.sampled_from(["vital"] * 8 + ["lab", "oxygen", "acvpu", "med"]))
    if kind == "vital":
        sig, lo, hi = draw(st.sampled_from(VITALS))
        value = draw(st.floats(min_value=lo, max_value=hi, allow_nan=False))
        device = draw(st.sampled_from(["a", "b"]))
        return VitalSample(
            patient_id="p",
            observed_at=at,
            code=SIGNAL_TO_LOINC[sig],
            value=value,
            unit=SIGNALS[sig].unit,
            device_id=device,
            source="prop",
        )
    if kind == "lab":
        sig, lo, hi = draw(st.sampled_from(LABS))
        value = draw(st.floats(min_value=lo, max_value=hi, allow_nan=False))
        return LabResult(
            patient_id="p",
            observed_at=at,
            code=SIGNAL_TO_LOINC[sig],
            value=value,
            unit=SIGNALS[sig].unit,
        )
    if kind == "oxygen":
        return OxygenTherapy(patient_id="p", observed_at=at, on=draw(st.booleans()))
    if kind == "acvpu":
        return ConsciousnessAssessment(
            patient_id="p", observed_at=at, level=draw(st.integers(0, 4))
        )
    return MedicationEvent(
        patient_id="p",
        observed_at=at,
        medication=draw(st.sampled_from(list(MedicationClass))),
        action=draw(st.sampled_from(list(MedicationAction))),
    )


def dedupe(evs: list[Event]) -> list[Event]:
    seen: dict[str, Event] = {}
    for ev in evs:
        seen.setdefault(ev.event_id, ev)
    return list(seen.values())


def in_order(evs: list[Event]) -> list[Event]:
    return sorted(evs, key=lambda e: (e.t_ms, e.event_id))


def fold(evs: list[Event]) -> TwinState:
    state: TwinState | None = None
    for ev in evs:
        state, _ = apply(state, ev, CFG)
    assert state is not None
    return state


stream = st.lists(events(), min_size=1, max_size=60).map(dedupe)
jitters = st.lists(st.integers(min_value=0, max_value=LATENESS_MS), min_size=60, max_size=60)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(stream, jitters)
def test_any_arrival_order_within_the_lateness_bound_gives_the_in_order_state(
    evs: list[Event], jitter: list[int]
) -> None:
    # Delivery time = event time + a delay of at most the lateness bound. Every event then
    # arrives no more than the bound behind the newest event delivered before it.
    delays = dict(zip((e.event_id for e in evs), jitter, strict=False))
    delivered = sorted(evs, key=lambda e: e.t_ms + delays[e.event_id])
    expected = fold(in_order(evs))
    got = fold(delivered)
    assert got == expected
    assert got.late_count == 0


@SETTINGS
@given(stream, st.data())
def test_redelivery_is_a_no_op(evs: list[Event], data: st.DataObject) -> None:
    ordered = in_order(evs)
    with_dups: list[Event] = []
    for ev in ordered:
        with_dups.append(ev)
        if data.draw(st.booleans()):
            with_dups.append(ev)  # at-least-once delivery: the same event again
    assert fold(with_dups) == fold(ordered)


@SETTINGS
@given(stream, st.integers(min_value=0, max_value=59))
def test_single_event_twice_changes_nothing(evs: list[Event], pick: int) -> None:
    ordered = in_order(evs)
    state = fold(ordered)
    ev = ordered[pick % len(ordered)]
    if ev.t_ms >= state.watermark_ms - LATENESS_MS:
        again, effects = apply(state, ev, CFG)
        assert again == state
        assert effects == []


@SETTINGS
@given(stream, st.integers(min_value=1, max_value=59))
def test_serialisation_round_trips_and_restored_twin_behaves_alike(
    evs: list[Event], cut: int
) -> None:
    ordered = in_order(evs)
    head, tail = ordered[:cut], ordered[cut:]
    state, _ = apply_many(None, head, CFG)
    assert state is not None
    data = state.to_bytes()
    restored = TwinState.from_bytes(data)
    assert restored.to_bytes() == data
    a, fx_a = apply_many(state, tail, CFG)
    b, fx_b = apply_many(restored, tail, CFG)
    assert a == b
    assert [e.effect_id for e in fx_a] == [e.effect_id for e in fx_b]


@SETTINGS
@given(stream)
def test_apply_and_apply_many_agree(evs: list[Event]) -> None:
    state: TwinState | None = None
    one_by_one = []
    for ev in evs:
        state, fx = apply(state, ev, CFG)
        one_by_one.extend(fx)
    batch, batch_fx = apply_many(None, evs, CFG)
    assert batch == state
    assert [e.effect_id for e in batch_fx] == [e.effect_id for e in one_by_one]


@SETTINGS
@given(stream, st.lists(st.integers(min_value=0, max_value=60), max_size=6), st.data())
def test_apply_runs_yields_what_apply_many_returns_after_each_run(
    evs: list[Event], cuts: list[int], data: st.DataObject
) -> None:
    """Whatever the cut into runs, and from a prior state or none: one private copy folded run
    by run reads, after each run, as apply_many over everything so far; the given state stays."""
    split = data.draw(st.integers(min_value=0, max_value=len(evs)))
    start, _ = apply_many(None, evs[:split], CFG)
    before = None if start is None else start.to_bytes()
    rest = evs[split:]
    bounds = sorted({min(c, len(rest)) for c in cuts} | {0, len(rest)})
    runs = [rest[a:b] for a, b in itertools.pairwise(bounds)]
    expected = start
    seen = 0
    for (state, fx), run in zip(apply_runs(start, runs, CFG), runs, strict=True):
        expected, expected_fx = apply_many(expected, run, CFG)
        assert state == expected
        assert [e.effect_id for e in fx] == [e.effect_id for e in expected_fx]
        seen += 1
    assert seen == len(runs)
    assert (None if start is None else start.to_bytes()) == before


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=1, max_value=5), st.integers(min_value=0, max_value=2**31))
def test_twin_size_is_bounded_whatever_the_stream_length(days: int, seed: int) -> None:
    """Default config (24 h of 5-minute bins): a day or five of 1-minute data, same size class."""
    rng = random.Random(seed)
    evs: list[Event] = []
    for minute in range(0, days * 24 * 60, 1):
        at = T0 + timedelta(minutes=minute)
        for sig, lo, hi in VITALS[:3] + VITALS[5:7]:
            evs.append(
                VitalSample(
                    patient_id="p",
                    observed_at=at,
                    code=SIGNAL_TO_LOINC[sig],
                    value=rng.uniform(lo, hi),
                    unit=SIGNALS[sig].unit,
                    device_id="w",
                )
            )
    state, _ = apply_many(None, evs)
    assert state is not None
    assert len(state.to_bytes()) <= 16 * 1024
    assert len(state.seen) <= 5 * 20  # only ids of still-open bins are remembered
    assert len(state.open_bins) <= 5 * 4
