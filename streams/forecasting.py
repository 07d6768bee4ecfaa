"""The runtime adapter for forecasts: micro-batch "forecast due" effects, call the fast path.

The twin emits ``ForecastDue`` every 15 minutes of event time per patient. Forecasting them one
by one would waste the model (a batch of 64 costs little more than one), so ``ForecastBatcher``
collects the due patients across micro-batches of records and forecasts them together when
the batch is full (``max_batch``) or the oldest request has waited ``max_wait_s`` of wall time,
whichever comes first. A patient due twice before a flush is forecast once, at its newest slot.

Results are ``models.fastpath.PatientForecast`` records: quantile trajectories, risk by horizon
with an interval, and an explanation; ``to_forecast_risk()`` gives the alert policy's
``twin.alerting.ForecastRisk``; ``to_dict()`` is what sinks store. The batcher does no I/O;
the runtime hands it effects and states and delivers what it returns (``on_results``).

Wiring into ``streams.embedded.EmbeddedRuntime``: pass ``on_batch=[batcher.on_batch]``; the
batcher calls ``on_results(forecasts, states)`` after each flush.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from twin.effects import Effect, ForecastDue
from twin.state import TwinState

if TYPE_CHECKING:  # the Kafka worker imports this module without torch when forecasting is off
    from models.fastpath import Forecaster, PatientForecast

log = logging.getLogger(__name__)

OnResults = Callable[[list["PatientForecast"], Mapping[str, TwinState]], None]


def newest_due(effects: Iterable[Effect], into: dict[str, int] | None = None) -> dict[str, int]:
    """Patient -> newest forecast slot among the ``ForecastDue`` effects (merged into ``into``):
    a patient due twice before its forecast is forecast once, at the newer slot."""
    due = {} if into is None else into
    for fx in effects:
        if isinstance(fx, ForecastDue) and fx.at_ms > due.get(fx.patient_id, -1):
            due[fx.patient_id] = fx.at_ms
    return due


class ForecastBatcher:
    def __init__(
        self,
        forecaster: Forecaster,
        *,
        max_batch: int = 256,
        max_wait_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_results: OnResults | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")
        self.forecaster = forecaster
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.on_results = on_results
        self._pending: dict[str, int] = {}  # patient -> newest due slot (event-time ms)
        self._since: float | None = None  # wall time of the oldest pending request
        self.forecasts = 0
        self.batches = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def offer(self, effects: Iterable[Effect]) -> int:
        """Queue the ``ForecastDue`` effects among ``effects``; returns how many were queued."""
        due = [fx for fx in effects if isinstance(fx, ForecastDue)]
        if due and not self._pending:
            self._since = self.clock()
        newest_due(due, into=self._pending)
        return len(due)

    def due(self) -> bool:
        if not self._pending:
            return False
        if len(self._pending) >= self.max_batch:
            return True
        return self._since is not None and self.clock() - self._since >= self.max_wait_s

    def flush(self, states: Mapping[str, TwinState]) -> list[PatientForecast]:
        """Forecast every pending patient now (in chunks of ``max_batch``)."""
        pending, self._pending, self._since = self._pending, {}, None
        todo = [(pid, at) for pid, at in pending.items() if pid in states]
        if len(todo) < len(pending):
            log.warning(
                "%d forecast requests for unknown patients dropped", len(pending) - len(todo)
            )
        out: list[PatientForecast] = []
        for a in range(0, len(todo), self.max_batch):
            part = todo[a : a + self.max_batch]
            out.extend(
                self.forecaster.forecast_states(
                    [states[pid] for pid, _ in part], [at for _, at in part]
                )
            )
            self.batches += 1
        self.forecasts += len(out)
        return out

    def poll(self, states: Mapping[str, TwinState]) -> list[PatientForecast]:
        """Flush if the batch is full or has waited long enough; else nothing."""
        return self.flush(states) if self.due() else []

    def on_batch(self, outcome: Any, states: Mapping[str, TwinState]) -> None:
        """``EmbeddedRuntime`` hook: queue the batch's due forecasts, flush when due."""
        self.offer(outcome.effects)
        results = self.poll(states)
        if results and self.on_results is not None:
            self.on_results(results, states)
