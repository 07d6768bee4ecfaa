"""The one place a twin changes: ``apply(state | None, event) -> (state, effects)``.

Semantics (each is a tested property):

- **Pure.** No I/O, no clock: event time is the only time. ``apply`` never mutates the state it
  is given; it returns a new one. ``apply_many`` folds a batch over one private copy, and
  ``apply_runs`` a sequence of batches, yielding after each: that is how the runtime reaches
  its throughput; all run the same step and give identical states.
- **Columnar samples fold as their events.** ``apply_samples`` (and ``apply_many``, which takes
  ``twin.batch.VitalBatch`` parts among events) folds a batch of plain vital samples row by row
  through the very loop a ``VitalSample`` event goes through (``_vitals``): same state, same
  effects, same ids as ``apply_many`` over the events the batch stands for.
- **Duplicates are no-ops.** The twin remembers the ids of events whose window bin is still open
  (see below); a re-delivered event returns the same state and no effects.
- **Order-insensitive within the lateness bound.** The watermark is the newest event time seen.
  A bin closes once it ends before ``watermark - lateness``. Every event not older than
  ``watermark - lateness`` on arrival lands in an open bin, and every other field is an
  order-free merge (newest reading wins by observed time, then event-id hash), so any such
  arrival order gives the in-order state bit for bit.
- **Late samples are not dropped silently.** A windowed sample whose bin has closed still
  updates ``latest`` if it is the newest reading of its signal, is counted in ``late_count``, and
  produces a ``LateEvent`` effect; the closed bin is not rewritten (its forecasts are history).
  Beyond the dedup horizon a re-delivery cannot be told from a new event: it is counted again and
  reported again with the same effect id, which downstream sinks deduplicate.
- **Artifacts** (device-flagged or physiologically impossible readings) never reach ``latest``,
  windows or scores; the newest per signal is kept with its reason and an effect is emitted.
- **Scores** are NEWS2 and qSOFA over the non-stale latest values at the watermark.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from twin import scores
from twin.batch import Row, VitalBatch
from twin.effects import (
    AlertCandidate,
    ArtifactDetected,
    BandChanged,
    Effect,
    ForecastDue,
    LateEvent,
    ScoreChanged,
    effect_id,
)
from twin.errors import InvalidEvent, Reason
from twin.events import (
    ConsciousnessAssessment,
    Demographics,
    Diagnosis,
    Encounter,
    EncounterAction,
    Event,
    LabResult,
    MedicationAction,
    MedicationEvent,
    OxygenTarget,
    OxygenTherapy,
    VitalSample,
    to_ms,
)
from twin.signals import CHANNEL_INDEX, SIGNALS, WINDOW_CHANNELS, Signal
from twin.state import DEFAULT_CONFIG, FIXED_POINT, TwinConfig, TwinState, bin_value

_N_CH = len(WINDOW_CHANNELS)
_FOREVER = 2**62

# NEWS2 inputs that come from ``latest`` and the parameter names they score as.
_SCORED: dict[Signal, str] = {
    Signal.RESPIRATORY_RATE: "respiratory_rate",
    Signal.SPO2: "spo2",
    Signal.SYSTOLIC_BP: "systolic_bp",
    Signal.HEART_RATE: "pulse",
    Signal.CONSCIOUSNESS: "consciousness",
    Signal.TEMPERATURE: "temperature",
}
_STALE_MS: dict[Signal, int] = {s: SIGNALS[s].stale_after_s * 1000 for s in Signal}
_BAND_RANK = {b.value: i for i, b in enumerate(scores.Band)}
# The detail names no identifier: it ends up in dead-letter reasons and logs.
_MISMATCH = "event belongs to another patient's twin"


def apply(
    state: TwinState | None, event: Event, config: TwinConfig = DEFAULT_CONFIG
) -> tuple[TwinState, list[Effect]]:
    """Fold one event into a twin. ``state`` is left untouched; a new state is returned."""
    st = TwinState(event.patient_id, config) if state is None else state.copy()
    effects: list[Effect] = []
    _step(st, event, config, effects)
    return st, effects


def apply_many(
    state: TwinState | None,
    events: Iterable[Event | VitalBatch],
    config: TwinConfig = DEFAULT_CONFIG,
) -> tuple[TwinState | None, list[Effect]]:
    """Fold a batch of one patient's events; same result as ``apply`` one by one.

    A ``VitalBatch`` among them folds exactly as the events it stands for, in its row order.
    """
    effects: list[Effect] = []
    st = _fold(None if state is None else state.copy(), events, config, effects)
    return st, effects


def apply_runs(
    state: TwinState | None,
    runs: Iterable[Iterable[Event | VitalBatch]],
    config: TwinConfig = DEFAULT_CONFIG,
) -> Iterator[tuple[TwinState, list[Effect]]]:
    """Fold runs of one patient's events in order; after each run, yield the state and its
    effects.

    Each yield equals ``apply_many`` over all the runs so far, but the runs fold into one
    private copy instead of a copy each: the Kafka worker evaluates its alert policy after
    every minute of event time, and a copy per minute was a tenth of its fold. The state
    yielded is that copy, which the next run changes: read it before resuming the iterator
    and do not mutate it. A run that leaves no state (no events yet) yields nothing.
    """
    st = None if state is None else state.copy()
    for run in runs:
        effects: list[Effect] = []
        st = _fold(st, run, config, effects)
        if st is not None:
            yield st, effects


def _fold(
    st: TwinState | None,
    events: Iterable[Event | VitalBatch],
    config: TwinConfig,
    effects: list[Effect],
) -> TwinState | None:
    """Fold ``events`` into ``st`` in place (a new state for the first event if None)."""
    for event in events:
        if isinstance(event, VitalBatch):
            if len(event) == 0:
                continue
            if st is None:
                st = TwinState(event.patient_id, config)
            if event.patient_id != st.patient_id:
                # Every row names the batch's patient: its first event would raise this.
                raise InvalidEvent(Reason.PATIENT_MISMATCH, _MISMATCH)
            _vitals(st, event.rows, config, effects)
            continue
        if st is None:
            st = TwinState(event.patient_id, config)
        _step(st, event, config, effects)
    return st


def apply_samples(
    state: TwinState | None, batch: VitalBatch, config: TwinConfig = DEFAULT_CONFIG
) -> tuple[TwinState | None, list[Effect]]:
    """Fold a columnar batch of vital samples: ``apply_many`` over the events it stands for."""
    return apply_many(state, (batch,), config)


def _step(st: TwinState, ev: Event, cfg: TwinConfig, out: list[Effect]) -> None:
    if ev.patient_id != st.patient_id:
        raise InvalidEvent(Reason.PATIENT_MISMATCH, _MISMATCH)
    if isinstance(ev, VitalSample):
        _vitals(
            st, ((ev.t_ms, ev.id_hash, ev.event_id, ev.sig, ev.value, ev.artifact()),), cfg, out
        )
        return
    idh = ev.id_hash
    if idh in st.seen:
        return
    t = ev.t_ms
    rescore = _arrive(st, t, idh, cfg, out)

    if isinstance(ev, ConsciousnessAssessment):
        rescore = _newest(st, Signal.CONSCIOUSNESS, t, idh, float(ev.level)) or rescore
    elif isinstance(ev, OxygenTherapy):
        if st.oxygen is None or (t, idh) > st.oxygen[:2]:
            st.oxygen = (t, idh, ev.on, ev.flow_l_min)
            rescore = True
    elif isinstance(ev, OxygenTarget):
        if st.spo2_target is None or (t, idh) > st.spo2_target[:2]:
            st.spo2_target = (t, idh, ev.spo2_scale)
            rescore = True
    elif isinstance(ev, LabResult):
        if _newest(st, ev.sig, t, idh, ev.value):
            issued = -1 if ev.issued_at is None else to_ms(ev.issued_at)
            st.labs_issued_ms[ev.sig] = issued
    elif isinstance(ev, MedicationEvent):
        _medication(st, ev, t, idh)
    elif isinstance(ev, Diagnosis):
        cur = st.conditions.get(ev.condition.value)
        if cur is None or (t, idh) > cur[:2]:
            st.conditions[ev.condition.value] = (t, idh, ev.active)
    elif isinstance(ev, Encounter):
        if ev.action is EncounterAction.ADMIT:
            if st.encounter_admit is None or (t, idh) > st.encounter_admit[:2]:
                st.encounter_admit = (t, idh, ev.ward)
        elif st.encounter_discharge is None or (t, idh) > st.encounter_discharge:
            st.encounter_discharge = (t, idh)
    elif isinstance(ev, Demographics) and (
        st.demographics is None or (t, idh) > st.demographics[:2]
    ):
        birth = None if ev.birth_date is None else ev.birth_date.isoformat()
        st.demographics = (t, idh, birth, ev.sex.value)

    if rescore or st.watermark_ms >= st._valid_until_ms:
        _rescore(st, ev.event_id, out)


def _vitals(st: TwinState, rows: Iterable[Row], cfg: TwinConfig, out: list[Effect]) -> None:
    """The step of a vital sample, for each of ``rows`` in order.

    The one definition for ``VitalSample`` events (``_step`` passes a single row) and for
    columnar batches alike. The common path is written out in the loop rather than split into
    helpers per sample (that saved ~8% of the fold); the watermark's advance, the eviction of
    remembered ids and rescoring, which are rarer, stay in their helpers.
    """
    bin_ms = st.bin_ms
    capacity = cfg.dedup_capacity
    open_bins = st.open_bins  # mutated in place everywhere, never replaced
    seen = st.seen
    for t, idh, event_id, sig, value, reason in rows:
        if idh in seen:
            continue
        rescore = False
        if t > st.watermark_ms:
            rescore = _advance(st, t, cfg, out)
            seen = st.seen  # closing bins replaces it
        b = t // bin_ms
        closed = st.closed_upto
        if closed < 0 or b >= closed:
            if len(seen) < capacity:
                seen[idh] = t
            else:
                _remember(st, idh, t, cfg)
        if reason is not None:
            cur = st.artifacts.get(sig)
            if cur is None or (t, idh) > cur[:2]:
                st.artifacts[sig] = (t, idh, value, reason)
            st.artifact_count += 1
            fx = effect_id("artifact", st.patient_id, event_id)
            out.append(ArtifactDetected(fx, st.patient_id, t, event_id, sig.value, value, reason))
        else:
            ch = CHANNEL_INDEX.get(sig)
            if ch is not None:
                if b < closed:
                    st.late_count += 1
                    fx = effect_id("late_event", st.patient_id, event_id)
                    wm = st.watermark_ms
                    out.append(LateEvent(fx, st.patient_id, t, event_id, sig.value, wm, wm - t))
                else:
                    key = b * _N_CH + ch
                    fixed = round(value * FIXED_POINT)
                    acc = open_bins.get(key)
                    open_bins[key] = (fixed, 1) if acc is None else (acc[0] + fixed, acc[1] + 1)
            rescore = _newest(st, sig, t, idh, value) or rescore
        if rescore or st.watermark_ms >= st._valid_until_ms:
            _rescore(st, event_id, out)


def _arrive(st: TwinState, t: int, idh: int, cfg: TwinConfig, out: list[Effect]) -> bool:
    """Advance the watermark to a new event's time, remember its id while its bin is open.

    ``_vitals`` does the same inline. Returns True if scores may change.
    """
    rescore = False
    if t > st.watermark_ms:
        rescore = _advance(st, t, cfg, out)
    if st.closed_upto < 0 or t // st.bin_ms >= st.closed_upto:
        _remember(st, idh, t, cfg)
    return rescore


def _advance(st: TwinState, t: int, cfg: TwinConfig, out: list[Effect]) -> bool:
    """Move the watermark to ``t``: close bins, schedule forecasts. True if scores may change."""
    previous = st.watermark_ms
    st.watermark_ms = t
    closed = (t - cfg.lateness_s * 1000) // st.bin_ms
    if st.closed_upto < 0:
        st.closed_upto = closed
    elif closed > st.closed_upto:
        _close_bins(st, closed)
    every = cfg.forecast_every_s * 1000
    if previous >= 0 and t // every > previous // every and _has_window_data(st):
        slot = (t // every) * every
        out.append(ForecastDue(effect_id("forecast_due", st.patient_id, slot), st.patient_id, slot))
    return t >= st._valid_until_ms


def _close_bins(st: TwinState, closed: int) -> None:
    """Freeze every open bin below ``closed`` into the ring; forget ids that are now late."""
    ring = st.ring
    n = ring.shape[1]
    first = st.closed_upto
    if closed - first >= n:
        ring[:] = np.nan
    elif closed - first == 1:
        ring[:, first % n] = np.nan  # the usual case, without building an index array
    else:
        # These slots held bins that have just fallen out of the 24 h window.
        ring[:, np.arange(first, closed) % n] = np.nan
    limit = closed * _N_CH
    for key in [k for k in st.open_bins if k < limit]:
        total, count = st.open_bins.pop(key)
        b, ch = divmod(key, _N_CH)
        if b >= closed - n:
            ring[ch, b % n] = bin_value(WINDOW_CHANNELS[ch], total, count)
    cutoff = closed * st.bin_ms
    st.seen = {k: v for k, v in st.seen.items() if v >= cutoff}
    st.closed_upto = closed


def _remember(st: TwinState, idh: int, t: int, cfg: TwinConfig) -> None:
    if len(st.seen) >= cfg.dedup_capacity:
        # A burst beyond the cap: forget the oldest id (deterministically) rather than grow.
        oldest = min(st.seen, key=lambda k: (st.seen[k], k))
        del st.seen[oldest]
    st.seen[idh] = t


def _newest(st: TwinState, sig: Signal, t: int, idh: int, value: float) -> bool:
    """Keep the reading if it is the newest of its signal. True if a score input changed."""
    cur = st.latest.get(sig)
    # (t, idh) <= cur[:2], without building the tuples (this runs for every sample)
    if cur is not None and (t < cur[0] or (t == cur[0] and idh <= cur[1])):
        return False
    st.latest[sig] = (t, idh, value)
    name = _SCORED.get(sig)
    if name is None:
        return False
    if cur is None or name not in st.news2_points or cur[0] < st.watermark_ms - _STALE_MS[sig]:
        return True
    # Same points for the old and the new value: the scores cannot change (hot-path shortcut).
    return value != cur[2] and _points(sig, cur[2], st) != _points(sig, value, st)


# Memo of ``_score_points``, a pure function: a patient's vitals repeat a few dozen values all
# day, and scoring each reading twice was a third of the fold. Cleared when full.
_POINTS_MEMO: dict[tuple[object, ...], tuple[int, int]] = {}
_POINTS_MEMO_SIZE = 1 << 16


def _points(sig: Signal, value: float, st: TwinState) -> tuple[int, int]:
    """A value's NEWS2 points and its qSOFA point."""
    # Only SpO2's points depend on more than the value.
    key = (sig, value, bool(st.on_oxygen), st.spo2_scale) if sig is Signal.SPO2 else (sig, value)
    points = _POINTS_MEMO.get(key)
    if points is None:
        if len(_POINTS_MEMO) >= _POINTS_MEMO_SIZE:
            _POINTS_MEMO.clear()
        points = _POINTS_MEMO[key] = _score_points(sig, value, st)
    return points


def _score_points(sig: Signal, value: float, st: TwinState) -> tuple[int, int]:
    if sig is Signal.HEART_RATE:
        return scores.pulse_points(value), 0
    if sig is Signal.RESPIRATORY_RATE:
        return scores.respiratory_rate_points(value), scores.qsofa_respiratory_rate_point(value)
    if sig is Signal.SYSTOLIC_BP:
        return scores.systolic_bp_points(value), scores.qsofa_systolic_bp_point(value)
    if sig is Signal.SPO2:
        on_o2 = bool(st.on_oxygen)
        return scores.spo2_points(value, on_oxygen=on_o2, scale=st.spo2_scale), 0
    if sig is Signal.TEMPERATURE:
        return scores.temperature_points(value), 0
    return scores.consciousness_points(int(value)), int(value != 0)


def _medication(st: TwinState, ev: MedicationEvent, t: int, idh: int) -> None:
    key = ev.medication.value
    cur = st.medications.get(key)
    first = -1 if cur is None else cur[0]
    if ev.action is MedicationAction.ADMINISTERED and (first < 0 or t < first):
        first = t
    if cur is None or (t, idh) > (cur[1], cur[2]):
        st.medications[key] = (first, t, idh, ev.action.value, ev.dose)
    else:
        st.medications[key] = (first, *cur[1:])


def _has_window_data(st: TwinState) -> bool:
    return bool(st.open_bins) or any(s in st.latest for s in WINDOW_CHANNELS)


def _fresh(st: TwinState, sig: Signal) -> float | None:
    reading = st.latest.get(sig)
    if reading is None or reading[0] < st.watermark_ms - _STALE_MS[sig]:
        return None
    return reading[2]


def _rescore(st: TwinState, trigger: str, out: list[Effect]) -> None:
    wm = st.watermark_ms
    consciousness = _fresh(st, Signal.CONSCIOUSNESS)
    rr = _fresh(st, Signal.RESPIRATORY_RATE)
    sbp = _fresh(st, Signal.SYSTOLIC_BP)
    n2 = scores.news2(
        respiratory_rate=rr,
        spo2=_fresh(st, Signal.SPO2),
        on_oxygen=st.on_oxygen,
        systolic_bp=sbp,
        pulse=_fresh(st, Signal.HEART_RATE),
        consciousness=None if consciousness is None else int(consciousness),
        temperature=_fresh(st, Signal.TEMPERATURE),
        spo2_scale=st.spo2_scale,
    )
    q = scores.qsofa(
        respiratory_rate=rr,
        systolic_bp=sbp,
        # ACVPU other than Alert stands in for GCS < 15 (Sepsis-3's altered mentation).
        altered_mentation=None if consciousness is None else consciousness != 0,
    )
    # The first watermark at which a scored value goes stale: the next forced rescore.
    st._valid_until_ms = min(
        (
            r[0] + _STALE_MS[s] + 1
            for s, r in st.latest.items()
            if s in _SCORED and r[0] + _STALE_MS[s] >= wm
        ),
        default=_FOREVER,
    )
    if (
        n2.total == st.news2_total
        and n2.points == st.news2_points
        and n2.missing == st.news2_missing
        and q.points == st.qsofa_points
    ):
        return
    before_band, before_points, before_qsofa = st.news2_band, st.news2_points, st.qsofa_total
    st.news2_total, st.news2_band = n2.total, n2.band.value
    st.news2_points, st.news2_missing = dict(n2.points), n2.missing
    st.qsofa_total, st.qsofa_points = q.total, dict(q.points)
    pid = st.patient_id
    out.append(
        ScoreChanged(
            effect_id("score_changed", pid, trigger),
            pid,
            wm,
            n2.total,
            n2.band.value,
            dict(n2.points),
            n2.missing,
            q.total,
            trigger,
        )
    )
    if n2.band.value != before_band:
        fx = effect_id("band_changed", pid, trigger)
        out.append(BandChanged(fx, pid, wm, before_band, n2.band.value, n2.total, trigger))
    rules: list[str] = []
    rank, before_rank = _BAND_RANK[n2.band.value], _BAND_RANK[before_band]
    if rank > before_rank and n2.band in (scores.Band.MEDIUM, scores.Band.HIGH):
        rules.append("news2_high" if n2.band is scores.Band.HIGH else "news2_medium")
    if any(p == 3 and before_points.get(k) != 3 for k, p in n2.points.items()):
        rules.append("news2_single_3")
    if q.total >= 2 > before_qsofa:
        rules.append("qsofa")
    for rule in rules:
        out.append(
            AlertCandidate(
                effect_id("alert_candidate", pid, rule, trigger),
                pid,
                wm,
                rule,
                n2.total,
                n2.band.value,
                dict(n2.points),
                q.total,
                trigger,
            )
        )
