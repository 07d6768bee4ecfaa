"""What each arm does: schedules computed before the run, or policies deciding during it.

Population arms use the simulator's batch path:

- ``protocol_schedule``: the regimen from each true onset of a condition plus a delay - an
  idealised protocol triggered by a perfect diagnosis (the only arm that reads ground truth,
  through the episode draws, which do not depend on treatment);
- ``calendar_schedule``: the regimen on the calendar for every eligible twin.

Reactive arms implement the simulator's ``Policy`` protocol and see ``Observation``s - the
records the stream delivered - and nothing else:

- ``SignalRulePolicy``: starts the regimen once the latest clean observed values meet a rule;
- ``MonitoringPolicy``: the production pipeline in the loop. Each decision folds the delivered
  records into the patient's twin with ``twin.apply_many`` (``record.to_event()``, exactly
  what ingress produces), batch-forecasts the twins whose ``ForecastDue`` slot came up (when
  the arm has a forecaster), advances the alert book with ``twin.alerting.evaluate`` and
  treats the notifications as the clinician's pager. A clinician answers each notification of
  an ``act_on`` rule with probability ``adherence`` (a counter-based draw keyed by the twin and
  the notification time, so arms share it under the paired design), acknowledges it, and
  starts the regimen ``response_delay_min`` later unless a course is running or
  ``max_courses`` were given. An unanswered alert repeats on the policy's schedule.

Both reactive policies keep per-patient state keyed by patient id, so one policy object can
serve any set of twins and a twin's decisions never depend on which others share its shard.
"""

from __future__ import annotations

import operator
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from simulators.cohort import sample_cohort
from simulators.conditions import CONDITION_CODE, Condition, draw_episodes
from simulators.config import SimulationConfig
from simulators.interventions import Intervention, Observation, Schedule
from simulators.records import RecordKind
from simulators.seeds import keyed_uniform
from simulators.trials.forecaster import RiskModel
from simulators.trials.population import meets
from simulators.trials.spec import (
    MonitoringArm,
    ProtocolArm,
    Regimen,
    ScheduleArm,
    SignalRuleArm,
)
from twin import DEFAULT_CONFIG, TwinConfig, TwinState, apply_many
from twin.alerting import (
    AlertBook,
    AlertCommand,
    ForecastRisk,
    apply_command,
    evaluate,
)
from twin.effects import ForecastDue
from twin.events import ConsciousnessAssessment, Event, LabResult, VitalSample, to_ms
from twin.signals import Signal, artifact_reason

ADHERENCE = 0xAD4E  # key tag of the clinician-response draws
CLINICIAN = "trial-clinician"
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def twin_index(patient_id: str) -> int:
    """The simulator index in a patient id (``sim<seed>-<index>``)."""
    return int(patient_id.rsplit("-", 1)[1])


# ---- population arms: schedules ---------------------------------------------------------------


def protocol_schedule(
    arm: ProtocolArm, config: SimulationConfig, indices: Sequence[int]
) -> Schedule:
    """The regimen from every true onset of ``arm.condition`` plus ``arm.delay_h``."""
    cohort = sample_cohort(config, list(indices))
    episodes = draw_episodes(config, cohort)
    code = CONDITION_CODE[Condition(arm.condition)]
    schedule: dict[str, list[Intervention]] = {}
    for e in np.nonzero(episodes.condition == code)[0]:
        pid = config.patient_id(int(cohort.index[episodes.row[e]]))
        first = config.start + timedelta(minutes=float(episodes.onset_min[e]), hours=arm.delay_h)
        schedule.setdefault(pid, []).extend(arm.regimen.interventions(first))
    return {pid: sorted(items) for pid, items in schedule.items()}


def calendar_schedule(
    arm: ScheduleArm, config: SimulationConfig, indices: Sequence[int]
) -> Schedule:
    """The regimen from ``arm.start_h`` for every twin meeting ``arm.eligible``."""
    cohort = sample_cohort(config, list(indices))
    ok, _ = meets(arm.eligible, cohort)
    first = config.start + timedelta(hours=arm.start_h)
    items = arm.regimen.interventions(first)
    return {config.patient_id(int(cohort.index[r])): items for r in np.nonzero(ok)[0]}


# ---- reactive arms ------------------------------------------------------------------------------


@dataclass(slots=True)
class PatientLog:
    """What a reactive arm did for one patient (reported per twin)."""

    notifications: int = 0  # every notification of the alert policy (fired, repeat, resolved)
    alerts: int = 0  # alert episodes that reached the clinician ("fired")
    triggers: int = 0  # notifications of act_on rules (or rule matches of a signal rule)
    responses: int = 0  # triggers the clinician answered (adherence)
    courses: int = 0  # regimen courses started
    first_course_ms: int = -1  # ms after the start when the first course began


@dataclass
class _Courses:
    regimen: Regimen
    max_courses: int
    delay: timedelta
    running_until: dict[str, datetime] = field(default_factory=dict)

    def start(self, log: PatientLog, pid: str, at: datetime, start: datetime) -> list[Intervention]:
        """A new course at ``at`` unless one is running or the maximum was reached."""
        if log.courses >= self.max_courses:
            return []
        until = self.running_until.get(pid)
        if until is not None and at < until:
            return []
        log.courses += 1
        if log.first_course_ms < 0:
            log.first_course_ms = int((at - start) / timedelta(milliseconds=1))
        self.running_until[pid] = at + timedelta(hours=self.regimen.course_h)
        return self.regimen.interventions(at)


def _adheres(seed: int, patient_id: str, at_ms: int, rule: str, adherence: float) -> bool:
    if adherence >= 1.0:
        return True
    u = keyed_uniform(seed, twin_index(patient_id), ADHERENCE, at_ms, zlib.crc32(rule.encode()))
    return bool(float(u) < adherence)


class SignalRulePolicy:
    """Starts the regimen once every condition holds on the latest clean observed values."""

    def __init__(self, arm: SignalRuleArm, seed: int, start: datetime) -> None:
        self.arm = arm
        self.seed = seed
        self.start = start
        self.interval = timedelta(minutes=arm.review_every_min)
        self.max_age = timedelta(minutes=arm.max_age_min)
        self.latest: dict[str, dict[Signal, tuple[datetime, float]]] = {}
        self.logs: dict[str, PatientLog] = {}
        self._courses = _Courses(
            arm.regimen, arm.max_courses, timedelta(minutes=arm.response_delay_min)
        )

    def decide(self, observation: Observation) -> Iterable[Intervention]:
        pid = observation.patient_id
        latest = self.latest.setdefault(pid, {})
        log = self.logs.setdefault(pid, PatientLog())
        for rec in observation.records:
            found = _reading(rec.kind, rec.payload, rec.event)
            if found is None:
                continue
            sig, observed, value = found
            cur = latest.get(sig)
            if cur is None or observed >= cur[0]:
                latest[sig] = (observed, value)
        now = observation.now
        for cond in self.arm.when:
            reading = latest.get(cond.signal)
            if reading is None or now - reading[0] > self.max_age:
                return []
            if not _COMPARE[cond.op](reading[1], cond.value):
                return []
        log.triggers += 1
        at_ms = int((now - self.start) / timedelta(milliseconds=1))
        if not _adheres(self.seed, pid, at_ms, "signal_rule", self.arm.adherence):
            return []
        log.responses += 1
        return self._courses.start(log, pid, now + self._courses.delay, self.start)


def _reading(
    kind: RecordKind, payload: dict[str, object], event: Event | None
) -> tuple[Signal, datetime, float] | None:
    """(signal, observed at, value) of a clean reading in a record, else None."""
    if kind is RecordKind.SAMPLE:
        if payload.get("quality") == "artifact":
            return None
        sig = Signal(str(payload["signal"]))
        value = float(payload["value"])  # type: ignore[arg-type]
        if artifact_reason(sig, value) is not None:
            return None
        return sig, datetime.fromisoformat(str(payload["observed_at"])), value
    if isinstance(event, VitalSample | LabResult):
        if isinstance(event, VitalSample) and event.artifact() is not None:
            return None
        return event.sig, event.observed_at, float(event.value)
    if isinstance(event, ConsciousnessAssessment):
        return Signal.CONSCIOUSNESS, event.observed_at, float(event.level)
    return None


class MonitoringPolicy:
    """The production twin core, forecaster and alert policy in the loop (see module doc)."""

    def __init__(
        self,
        arm: MonitoringArm,
        seed: int,
        start: datetime,
        risk_model: RiskModel | None = None,
        twin_config: TwinConfig = DEFAULT_CONFIG,
    ) -> None:
        self.arm = arm
        self.seed = seed
        self.start = start
        self.interval = timedelta(minutes=arm.review_every_min)
        self.alert_policy = arm.policy
        self.act_on = frozenset(arm.act_on) if arm.act_on else None
        self.risk_model = risk_model
        self.twin_config = twin_config
        self.states: dict[str, TwinState] = {}
        self.books: dict[str, AlertBook] = {}
        self.logs: dict[str, PatientLog] = {}
        self.forecasts = 0
        self.timers: dict[str, float] = {
            "to_event": 0.0,
            "apply": 0.0,
            "forecast": 0.0,
            "alerts": 0.0,
        }
        self._courses = _Courses(
            arm.regimen, arm.max_courses, timedelta(minutes=arm.response_delay_min)
        )
        self._horizons = None if risk_model is None else [float(h) for h in risk_model.horizons_h]
        self._start_ms = to_ms(start)

    def decide(self, observation: Observation) -> Iterable[Intervention]:
        return self.decide_batch([observation])[0]

    def decide_batch(self, observations: Sequence[Observation]) -> list[list[Intervention]]:
        clock = time.process_time  # CPU time: honest on a shared machine
        t0 = clock()
        batches: list[list[Event]] = []
        for obs in observations:
            events = []
            for rec in obs.records:
                ev = rec.to_event()
                if ev is not None:
                    events.append(ev)
            batches.append(events)
        t1 = clock()
        touched: list[int] = []
        due: dict[int, int] = {}
        for k, (obs, events) in enumerate(zip(observations, batches, strict=True)):
            if not events:
                continue
            pid = obs.patient_id
            state, effects = apply_many(self.states.get(pid), events, self.twin_config)
            assert state is not None
            self.states[pid] = state
            touched.append(k)
            for fx in effects:
                if isinstance(fx, ForecastDue):
                    due[k] = fx.at_ms
        t2 = clock()
        forecasts = self._forecast(observations, due)
        t3 = clock()
        out: list[list[Intervention]] = [[] for _ in observations]
        for k in touched:
            out[k] = self._alerts(observations[k], forecasts.get(k))
        t4 = clock()
        self.timers["to_event"] += t1 - t0
        self.timers["apply"] += t2 - t1
        self.timers["forecast"] += t3 - t2
        self.timers["alerts"] += t4 - t3
        return out

    def _forecast(
        self, observations: Sequence[Observation], due: dict[int, int]
    ) -> dict[int, ForecastRisk]:
        if self.risk_model is None or not due or self._horizons is None:
            return {}
        keys = sorted(due)
        states = [self.states[observations[k].patient_id] for k in keys]
        slots = [due[k] for k in keys]
        risk = np.asarray(self.risk_model.risk(states, slots), dtype=np.float64)
        self.forecasts += len(keys)
        name = self.risk_model.name[:128]
        return {
            k: ForecastRisk(
                made_at_ms=slots[i],
                risk={h: float(p) for h, p in zip(self._horizons, risk[i], strict=True)},
                model=name,
            )
            for i, k in enumerate(keys)
        }

    def _alerts(self, obs: Observation, forecast: ForecastRisk | None) -> list[Intervention]:
        pid = obs.patient_id
        state = self.states[pid]
        log = self.logs.setdefault(pid, PatientLog())
        book, notes = evaluate(
            self.books.get(pid), state, state.watermark_ms, self.alert_policy, forecast
        )
        decided: list[Intervention] = []
        for note in notes:
            log.notifications += 1
            if note.reason == "fired":
                log.alerts += 1
            if note.status != "firing" or (
                self.act_on is not None and note.rule not in self.act_on
            ):
                continue
            log.triggers += 1
            if not _adheres(
                self.seed, pid, note.at_ms - self._start_ms, note.rule, self.arm.adherence
            ):
                continue
            log.responses += 1
            book, _ = apply_command(
                book,
                AlertCommand(
                    action="acknowledge",
                    patient_id=pid,
                    by=CLINICIAN,
                    at_ms=note.at_ms,
                    alert_id=note.alert_id,
                ),
            )
            noticed = self.start + timedelta(milliseconds=note.at_ms - self._start_ms)
            at = max(obs.now, noticed + self._courses.delay)
            decided.extend(self._courses.start(log, pid, at, self.start))
        self.books[pid] = book
        return decided
