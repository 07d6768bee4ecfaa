"""Forecast-due effects from the embedded runtime are batched, forecast and reach the alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from models.fastpath import Forecaster
from models.features import FeatureSpec
from streams.embedded import EmbeddedRuntime
from streams.forecasting import ForecastBatcher
from streams.ingress import Ingress
from streams.pipeline import Pipeline
from streams.pseudonym import Pseudonymiser, PseudonymStore
from streams.sources import JsonLinesSource
from streams.sqlite_store import SqliteStore
from twin.alerting import DEFAULT_POLICY, evaluate
from twin.effects import ForecastDue

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)


def _stream(path: Path, patients: int, minutes: int) -> None:
    lines = []
    for m in range(minutes):
        for p in range(patients):
            for code, value, unit in (
                ("8867-4", 80 + (m + 7 * p) % 15, "/min"),
                ("59408-5", 96, "%"),
                ("9279-1", 17, "/min"),
            ):
                lines.append(
                    json.dumps(
                        {
                            "patient_id": f"MRN-{p}",
                            "device_id": f"dev-{p}",
                            "code": code,
                            "value": value,
                            "unit": unit,
                            "source": "watch",
                            "observed_at": (T0 + timedelta(minutes=m)).isoformat(),
                        }
                    )
                )
    path.write_text("\n".join(lines) + "\n")


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.1  # each look at the clock: 0.1 s of "wall time"
        return self.t


def test_forecasts_flow_from_the_runtime(trained: Path, spec: FeatureSpec, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    _stream(src, patients=3, minutes=95)
    delivered: list = []
    batcher = ForecastBatcher(
        Forecaster.load(trained, spec),
        max_batch=2,
        max_wait_s=0.5,
        clock=FakeClock(),
        on_results=lambda results, states: delivered.extend(results),
    )
    store = SqliteStore(tmp_path / "db.sqlite")
    runtime = EmbeddedRuntime(
        Pipeline(Ingress(Pseudonymiser(PseudonymStore(tmp_path / "ps.db")))),
        store,
        JsonLinesSource(src, lambda: T0 + timedelta(hours=3)),
        batch_size=200,
        on_batch=[batcher.on_batch],
    )
    runtime.run()
    delivered.extend(batcher.flush(runtime.states))
    # 95 minutes: slots at 08:15 ... 09:30 for each of 3 patients (a patient due twice before a
    # flush is forecast once, at its newest slot)
    assert batcher.batches >= 2
    assert len(delivered) >= 3
    assert {r.patient_id for r in delivered} == set(runtime.states)
    assert all(r.at_ms % 900_000 == 0 for r in delivered)
    last = max(delivered, key=lambda r: r.at_ms)
    state = runtime.states[last.patient_id]
    book, _ = evaluate(None, state, state.watermark_ms, DEFAULT_POLICY, last.to_forecast_risk())
    assert book.forecast is not None
    assert book.forecast.made_at_ms == last.at_ms
    assert set(book.forecast.risk) == {float(h) for h in spec.risk_horizons_h}


def test_batcher_bounds_size_and_wait(trained: Path, spec: FeatureSpec) -> None:
    clock = FakeClock()
    b = ForecastBatcher(Forecaster.load(trained, spec), max_batch=3, max_wait_s=10, clock=clock)
    b.offer([ForecastDue("fx1", "a", 900_000), ForecastDue("fx2", "a", 1_800_000)])
    assert b.pending == 1
    assert not b.due()
    b.offer([ForecastDue("fx3", "b", 900_000), ForecastDue("fx4", "c", 900_000)])
    assert b.due()  # full
    b2 = ForecastBatcher(Forecaster.load(trained, spec), max_batch=99, max_wait_s=1.0, clock=clock)
    b2.offer([ForecastDue("fx5", "a", 900_000)])
    assert not b2.due()
    clock.t += 5
    assert b2.due()  # waited long enough
    assert b2.flush({}) == []
    assert b2.pending == 0
