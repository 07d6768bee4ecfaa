"""The embedded runtime: source -> in-process bus -> the shared pipeline -> sinks, one process.

No Kafka, no Docker: a new user sees the whole system with ``vitaltwin demo``. Records flow in
micro-batches bounded by size and by (wall) time; each batch is processed by the same
``Pipeline`` the faust workers use and committed to SQLite together with the source position
it reached, so a restart resumes where it stopped.

Time: a source yields records with a delivery time (``received_at``). With ``speed`` > 0 the
runtime paces delivery so that ``speed`` simulated seconds pass per wall second; with
``speed`` = 0 it runs as fast as it can (tests, back-fills).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from streams import metrics
from streams.pipeline import Outcome, Pipeline, Record
from streams.sqlite_store import SqliteStore
from twin import TwinState
from twin.events import to_ms

log = logging.getLogger(__name__)


class Source(Protocol):
    """Where records come from. ``name`` keys the resume position in the store."""

    name: str

    def records(self, resume_after: str | None) -> Iterator[tuple[str, Record]]:
        """Yield (position, record) in delivery order, starting after ``resume_after``."""
        ...


class Sink(Protocol):
    def write(self, outcome: Outcome, states: dict[str, TwinState]) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Stats:
    """What the live summary shows; updated after every committed batch."""

    batches: int = 0
    records: int = 0
    events: int = 0
    effects: int = 0
    dead_letters: int = 0
    sim_time_ms: int = 0
    started_wall: float = field(default_factory=time.monotonic)
    bands: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / max(time.monotonic() - self.started_wall, 1e-9)


OnBatch = Callable[[Outcome, dict[str, TwinState]], None]


class EmbeddedRuntime:
    def __init__(
        self,
        pipeline: Pipeline,
        store: SqliteStore,
        source: Source,
        *,
        sinks: list[Sink] | None = None,
        on_batch: list[OnBatch] | None = None,
        batch_size: int = 2000,
        batch_wait_s: float = 0.2,
        speed: float = 0.0,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.source = source
        self.sinks = sinks or []
        self.on_batch = on_batch or []
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self.speed = speed
        self.states: dict[str, TwinState] = store.load_states()
        self.pipeline.accounting = store.accounting()
        self.stats = Stats()
        self._stop = threading.Event()
        self._recount_bands()

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit it and return."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop())

    def run(self, *, duration_s: float | None = None, max_records: int | None = None) -> Stats:
        deadline = None if duration_s is None else time.monotonic() + duration_s
        resume = self.store.position(self.source.name)
        if resume is not None:
            log.info("resuming %s after position %s", self.source.name, resume)
        pace_origin: tuple[float, int] | None = None  # (wall, sim ms) when pacing started
        batch: list[Record] = []
        last_position: str | None = None
        batch_started = time.monotonic()
        for seen, (position, record) in enumerate(self.source.records(resume), start=1):
            if self.speed > 0:
                sim_ms = to_ms(record.received_at)
                if pace_origin is None:
                    pace_origin = (time.monotonic(), sim_ms)
                wait = pace_origin[0] + (sim_ms - pace_origin[1]) / 1000 / self.speed
                wait -= time.monotonic()
                if wait > 0:
                    if batch:  # flush what is due before sleeping: keep latency low
                        self._commit(batch, last_position)
                        batch = []
                    self._stop.wait(min(wait, 1.0))
            batch.append(record)
            last_position = position
            full = len(batch) >= self.batch_size
            if full or time.monotonic() - batch_started >= self.batch_wait_s:
                self._commit(batch, last_position)
                batch = []
                batch_started = time.monotonic()
            if self._stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                break
            if max_records is not None and seen >= max_records:
                break
        if batch:
            self._commit(batch, last_position)
        for sink in self.sinks:
            sink.close()
        return self.stats

    def _commit(self, batch: list[Record], position: str | None) -> None:
        started = time.monotonic()
        outcome = self.pipeline.handle(batch, self.states)
        for hook in self.on_batch:
            hook(outcome, self.states)
        self.store.commit_batch(
            states=outcome.touched,
            readings=outcome.readings(),
            effects=outcome.effects,
            dead=outcome.dead,
            positions={} if position is None else {self.source.name: position},
            accounting=self.pipeline.accounting,
        )
        for sink in self.sinks:
            sink.write(outcome, outcome.touched)
        elapsed = time.monotonic() - started
        metrics.observe_batch(outcome, elapsed, topic=self.source.name.split(":")[0])
        # In-process there is no queue before the batch: from hand-over to committed effects.
        metrics.observe_event_to_effect(elapsed)
        st = self.stats
        st.batches += 1
        st.records += len(batch)
        st.events += outcome.n_events
        st.effects += len(outcome.effects)
        st.dead_letters += len(outcome.dead)
        if batch:
            st.sim_time_ms = max(st.sim_time_ms, to_ms(batch[-1].received_at))
        self._recount_bands()

    def _recount_bands(self) -> None:
        bands: dict[str, int] = {}
        for state in self.states.values():
            bands[state.news2_band] = bands.get(state.news2_band, 0) + 1
        self.stats.bands = bands
