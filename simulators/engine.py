"""Running a cohort: chunks of patients in batch, schedules, policies, and the delivered stream.

``simulate`` yields one ``ChunkResult`` per chunk of patients (bounded memory, vectorised over
the chunk); ``stream`` merges the chunks' records into one delivery-ordered iterator. A
patient's output depends only on the root seed, the patient's index and its interventions, so
chunking and sharding never change it.

Policies. A policy decides every ``policy.interval`` per patient from the records delivered
since its last decision. The simulator is causal (an intervention at ``t`` changes nothing
observed at or before ``t``, and nothing is delivered before it is observed), so the loop is:
simulate; hand each patient the records received up to the decision time; re-simulate the
patients whose interventions changed (everything they were already given stays identical);
repeat. The final chunk is simulated once more with every decision in place.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from simulators.burden import Burdens
from simulators.cohort import Cohort, sample_cohort
from simulators.conditions import Episodes, draw_episodes
from simulators.config import COURSE_CHUNK_PATIENTS, SimulationConfig, check_indices
from simulators.devices import Channel, observe
from simulators.ehr import EhrTable, build_ehr
from simulators.errors import ConfigError, PolicyError
from simulators.glucose import simulate_glucose
from simulators.interventions import (
    DRUG_CODE,
    SOURCES,
    DoseLog,
    Intervention,
    Observation,
    Policy,
    Schedule,
    Source,
)
from simulators.physiology import Latent, run_latent
from simulators.records import PatientRecords, Record
from simulators.vitals import draw_noise, synthesize
from twin.signals import Signal

log = logging.getLogger(__name__)
Progress = Callable[[int], None]  # called with the number of patients just finished


@dataclass(frozen=True, slots=True)
class Course:
    """The hidden course of a set of patients: who they are, their episodes, what happened."""

    cohort: Cohort
    episodes: Episodes
    latent: Latent

    def take(self, rows: npt.NDArray[np.int64]) -> Course:
        """The patients at ``rows`` (sorted), renumbered from 0."""
        ep = np.nonzero(np.isin(self.episodes.row, rows))[0]
        episodes = replace(self.episodes.take(ep), row=np.searchsorted(rows, self.episodes.row[ep]))
        return Course(self.cohort.take(rows), episodes, self.latent.take(rows, ep))


def simulate_course(
    config: SimulationConfig, indices: Sequence[int], given: DoseLog | None = None
) -> Course:
    """Cohort, episodes and latent dynamics of these patients; ``given`` doses use their rows."""
    cohort = sample_cohort(config, list(indices))
    episodes = draw_episodes(config, cohort)
    latent = run_latent(config, cohort, episodes, given if given is not None else DoseLog.empty())
    return Course(cohort, episodes, latent)


def simulate_signals(config: SimulationConfig, course: Course) -> ChunkResult:
    """Devices and EHR for a course: the observable part."""
    cohort, episodes, latent = course.cohort, course.episodes, course.latent
    burdens = Burdens(latent, episodes)
    noise = draw_noise(config, cohort)
    vitals = synthesize(config, cohort, burdens, latent.doses, noise)
    glucose = simulate_glucose(config, cohort, burdens, latent.doses)
    channels = observe(config, cohort, latent, burdens, vitals, glucose, noise.delay_idx)
    del vitals, noise
    ehr = build_ehr(config, cohort, episodes, latent, burdens, glucose, channels)
    return ChunkResult(config, cohort, episodes, latent, channels, ehr)


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """Everything simulated for a chunk of patients (columns are chunk rows)."""

    config: SimulationConfig
    cohort: Cohort
    episodes: Episodes
    latent: Latent
    channels: dict[Signal, Channel]  # empty when simulated without signals
    ehr: EhrTable | None

    @property
    def patient_ids(self) -> list[str]:
        return [self.config.patient_id(int(i)) for i in self.cohort.index]

    def records(self, col: int) -> PatientRecords:
        if self.ehr is None:
            raise ConfigError("this chunk was simulated without signals")
        return PatientRecords(self, col)


def simulate_chunk(
    config: SimulationConfig,
    indices: Sequence[int],
    given: DoseLog | None = None,
    *,
    signals: bool = True,
) -> ChunkResult:
    """Simulate the patients with these indices; ``given`` doses use chunk rows."""
    course = simulate_course(config, indices, given)
    if not signals:
        return ChunkResult(config, course.cohort, course.episodes, course.latent, {}, None)
    return simulate_signals(config, course)


def _minute(config: SimulationConfig, at: datetime) -> float:
    return (at - config.start) / timedelta(minutes=1)


def _dose_rows(
    config: SimulationConfig,
    rows: Sequence[int],
    items: Iterable[Intervention],
    source: Source,
) -> DoseLog:
    r: list[int] = []
    d: list[int] = []
    m: list[float] = []
    v: list[float] = []
    for row, item in zip(rows, items, strict=True):
        minute = _minute(config, item.at)
        if minute < 0:
            raise ConfigError(f"intervention at {item.at} is before the simulation start")
        if minute >= config.minutes:
            continue
        r.append(row)
        d.append(DRUG_CODE[item.name])
        m.append(minute)
        v.append(item.amount)
    n = len(r)
    return DoseLog(
        np.asarray(r, np.int64),
        np.asarray(d, np.int64),
        np.asarray(m, np.float64),
        np.asarray(v, np.float64),
        np.full(n, SOURCES.index(source), np.int64),
    )


def _schedule_log(
    config: SimulationConfig, indices: Sequence[int], schedule: Schedule | None
) -> DoseLog:
    if not schedule:
        return DoseLog.empty()
    rows: list[int] = []
    items: list[Intervention] = []
    for row, index in enumerate(indices):
        for item in schedule.get(config.patient_id(index), ()):
            rows.append(row)
            items.append(item)
    return _dose_rows(config, rows, items, "schedule")


def _chunks(config: SimulationConfig, indices: Sequence[int] | None, size: int) -> list[list[int]]:
    idx = check_indices(range(config.patients) if indices is None else indices, config.patients)
    return [idx[i : i + size] for i in range(0, len(idx), size)]


def simulate(
    config: SimulationConfig,
    *,
    indices: Sequence[int] | None = None,
    schedule: Schedule | None = None,
    policy: Policy | None = None,
    signals: bool = True,
    progress: Progress | None = None,
) -> Iterator[ChunkResult]:
    """Simulate the cohort (or the patients ``indices``) block by block.

    Latent courses run over large chunks (one vector loop over time for many episodes); the
    signals over small blocks whose arrays fit in the CPU caches. With a policy, chunks are
    blocks (the policy loop re-simulates changed patients).
    """
    block = config.chunk_size()
    course_size = block if policy is not None else max(block, COURSE_CHUNK_PATIENTS)
    for chunk_indices in _chunks(config, indices, course_size):
        given = _schedule_log(config, chunk_indices, schedule)
        if policy is not None:
            given = _run_policy(config, chunk_indices, given, policy)
        course = simulate_course(config, chunk_indices, given)
        for lo in range(0, len(chunk_indices), block):
            rows = np.arange(lo, min(lo + block, len(chunk_indices)))
            part = course.take(rows)
            log.debug("simulating %d patients from index %d", rows.size, chunk_indices[lo])
            if signals:
                yield simulate_signals(config, part)
            else:
                yield ChunkResult(config, part.cohort, part.episodes, part.latent, {}, None)
            if progress is not None:
                progress(int(rows.size))


def _run_policy(
    config: SimulationConfig, indices: list[int], given: DoseLog, policy: Policy
) -> DoseLog:
    """Decide for every patient of the chunk over the horizon; returns all doses given."""
    if policy.interval <= timedelta(0):
        raise PolicyError("policy.interval must be positive")
    step_ms = round(policy.interval / timedelta(milliseconds=1))
    horizon_ms = config.minutes * 60_000
    extra: list[list[Intervention]] = [[] for _ in indices]
    chunk = simulate_chunk(config, indices, given)
    views = [chunk.records(c) for c in range(len(indices))]
    prev = -1
    t = step_ms
    while t <= horizon_ms:
        now = config.start + timedelta(milliseconds=t)
        changed: list[int] = []
        observations = [
            Observation(view.patient_id, now, tuple(view.between(prev, t))) for view in views
        ]
        batch = getattr(policy, "decide_batch", None)
        if batch is not None:
            # Optional hook: one call per decision time for the whole chunk, so a policy can
            # batch its work across patients (a forecaster in batch). Same semantics as decide.
            decisions = list(batch(observations))
            if len(decisions) != len(observations):
                raise PolicyError("decide_batch must return one decision per observation")
        else:
            decisions = [policy.decide(obs) for obs in observations]
        for c, decision in enumerate(decisions):
            decided = list(decision)
            for item in decided:
                if not isinstance(item, Intervention):
                    raise PolicyError(f"policy returned {item!r}, not an Intervention")
                if item.at < now:
                    raise PolicyError(f"intervention at {item.at} is before the decision at {now}")
            if decided:
                extra[c].extend(decided)
                changed.append(c)
        if changed:
            sub = [indices[c] for c in changed]
            sub_given = _merge(config, given, changed, [extra[c] for c in changed])
            redo = simulate_chunk(config, sub, sub_given)
            for k, c in enumerate(changed):
                views[c] = redo.records(k)
        prev = t
        t += step_ms
    rows = [c for c, items in enumerate(extra) for _ in items]
    items = [i for items in extra for i in items]
    return DoseLog.concat([given, _dose_rows(config, rows, items, "policy")])


def _merge(
    config: SimulationConfig, given: DoseLog, cols: list[int], items: list[list[Intervention]]
) -> DoseLog:
    """The doses of chunk rows ``cols`` (schedule plus policy), renumbered 0..len(cols)-1."""
    parts: list[DoseLog] = []
    for k, c in enumerate(cols):
        mine = given.take(np.nonzero(given.row == c)[0])
        parts.append(
            DoseLog(np.full(mine.n, k, np.int64), mine.drug, mine.minute, mine.dose, mine.source)
        )
        parts.append(_dose_rows(config, [k] * len(items[k]), items[k], "policy"))
    return DoseLog.concat(parts)


def stream(
    config: SimulationConfig,
    *,
    indices: Sequence[int] | None = None,
    schedule: Schedule | None = None,
    policy: Policy | None = None,
) -> Iterator[Record]:
    """Every record of the cohort in delivery order (ties: patient index, then source).

    Holds the whole cohort's arrays in memory: stream tens to hundreds of patients, shard
    (``indices``) for more.
    """
    views: list[PatientRecords] = []
    for chunk in simulate(config, indices=indices, schedule=schedule, policy=policy):
        views.extend(chunk.records(c) for c in range(chunk.cohort.n))

    def keyed(view: PatientRecords) -> Iterator[tuple[int, int, int, PatientRecords]]:
        pidx = view.patient_index
        for i in range(len(view)):
            yield int(view.received_ms[i]), pidx, i, view

    for _, _, i, view in heapq.merge(*(keyed(v) for v in views)):
        yield view.record(i)
