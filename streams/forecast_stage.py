"""The forecast stage of the embedded runtime: due forecasts -> fast path -> store and alerts.

Wraps ``streams.forecasting.ForecastBatcher``: after each batch it queues the twins'
``ForecastDue`` effects and, when a micro-batch is full or old enough, forecasts them together.
Each result is stored as a ``forecast`` effect (deterministic id: patient and forecast time, so a
replay overwrites nothing twice) for the API and ward page, and handed to the alert stage as the
patient's latest ``ForecastRisk`` for the forecast rule.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streams import metrics
from streams.alert_stage import AlertStage
from streams.sqlite_store import SqliteStore
from twin import TwinState
from twin.effects import effect_id

log = logging.getLogger(__name__)


class ForecastStage:
    def __init__(self, forecaster: Any, store: SqliteStore, alerts: AlertStage | None) -> None:
        from streams.forecasting import ForecastBatcher

        self.store = store
        self.alerts = alerts
        self.batcher = ForecastBatcher(forecaster, max_batch=256, max_wait_s=1.0)
        self.forecasts = 0

    @classmethod
    def load(
        cls,
        checkpoint: Path,
        store: SqliteStore,
        alerts: AlertStage | None,
        workers: int = 1,
    ) -> ForecastStage:
        """``workers``: chunks of a forecast batch run at once, one torch thread each."""
        from models.fastpath import Forecaster

        return cls(Forecaster.load(checkpoint, threads=1, workers=workers), store, alerts)

    def on_batch(self, outcome: Any, states: Mapping[str, TwinState]) -> None:
        started = time.monotonic()
        self.batcher.offer(outcome.effects)
        pending = self.batcher.pending
        try:
            results = self.batcher.poll(states)
        except Exception:
            # Advisory, as in the Kafka worker: a failing forecaster must not stop the ward.
            # The flush already took the requests: they are dropped, and counted.
            log.exception("forecaster failed; %d due twins stay without forecasts", pending)
            metrics.observe_forecast_failure(pending)
            return
        if results:
            metrics.observe_forecast(time.monotonic() - started)
            self._deliver(results, states)
            outcome.forecasts.extend(results)  # hooks run before the sinks: they write these

    def flush(self, states: Mapping[str, TwinState]) -> None:
        """Forecast whatever is still queued (at shutdown: nothing due is left unanswered)."""
        results = self.batcher.flush(states)
        if results:
            self._deliver(results, states)

    def _deliver(self, results: list[Any], states: Mapping[str, TwinState]) -> None:
        rows = []
        for fc in results:
            body = fc.to_dict()
            fx = effect_id("forecast", fc.patient_id, fc.at_ms)
            rows.append((fx, fc.patient_id, "forecast", fc.at_ms, json.dumps(body)))
            if self.alerts is not None:
                self.alerts.forecasts[fc.patient_id] = fc.to_forecast_risk()
        self.store.save_effect_rows(rows)
        self.forecasts += len(results)
