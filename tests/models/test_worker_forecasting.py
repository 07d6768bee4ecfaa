"""The Kafka worker's batch core answers "forecast due" with the TFT, as the embedded runtime does.

``streams.kafka_batch.process_batch`` is driven with faust-shaped records (no broker needed): the
patients a batch makes due are forecast at the end of it, the forecasts leave on the effects
topic with deterministic ids, reach the patients' alert books (written with the twin), and
become InfluxDB points in the measurements the Grafana dashboards query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from models.fastpath import Forecaster
from models.features import FeatureSpec
from streams.forecast_stage import ForecastStage
from streams.influx import SCHEMA, forecast_lines
from streams.ingress import Ingress
from streams.kafka_batch import BatchResult, Entry, ForecastFn, process_batch
from streams.kafka_settings import KafkaSettings
from streams.metrics import REGISTRY
from streams.pipeline import Outcome, Pipeline
from streams.sqlite_store import SqliteStore
from twin.effects import ForecastDue, effect_id

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: float
    generation_id: int = 1


@dataclass
class FaustEvent:
    message: Message


def records(settings: KafkaSettings, patients: list[str], minutes: int) -> list[FaustEvent]:
    out = []
    for m in range(minutes):
        at = T0 + timedelta(minutes=m)
        for p, pid in enumerate(patients):
            samples = [
                {
                    "patient_id": pid,
                    "device_id": f"dev-{p}",
                    "code": code,
                    "value": value,
                    "unit": unit,
                    "observed_at": at.isoformat(),
                }
                for code, value, unit in (
                    ("8867-4", 80 + (m + 7 * p) % 15, "/min"),
                    ("59408-5", 96, "%"),
                    ("9279-1", 17, "/min"),
                )
            ]
            msg = Message(
                settings.topics.wearable,
                p,
                m,
                pid.encode(),
                json.dumps({"samples": samples}).encode(),
                (at + timedelta(seconds=5)).timestamp(),
            )
            out.append(FaustEvent(msg))
    return out


def fold(patients: list[str], forecast: ForecastFn | None = None) -> BatchResult:
    """40 minutes of the patients' records through the worker's batch core, in one batch."""
    settings = KafkaSettings(topic_prefix="t")
    entries: dict[str, Entry] = {}
    return process_batch(
        Pipeline(Ingress()),
        settings,
        records(settings, patients, 40),
        lambda k: entries.setdefault(k, Entry()),
        forecast=forecast,
    )


def test_worker_batches_forecast_due_patients_into_effects_alerts_and_sinks(
    trained: Path, spec: FeatureSpec
) -> None:
    settings = KafkaSettings(topic_prefix="t")
    patients = ["tok-a", "tok-b"]
    entries: dict[str, Entry] = {}
    calls: list[int] = []
    forecaster = Forecaster.load(trained, spec)

    def forecast(states, slots):  # type: ignore[no-untyped-def]
        calls.append(len(states))
        return forecaster.forecast_states(states, slots)

    def load(key: str) -> Entry:
        return entries.setdefault(key, Entry())

    pipeline = Pipeline(Ingress())
    events = records(settings, patients, 40)
    first = process_batch(pipeline, settings, events[:20], load, forecast=forecast)
    assert calls == []  # 10 minutes: no forecast slot crossed yet
    assert first.outcome.forecasts == []

    # Crosses 08:15 and 08:30: one forecast per patient, at 08:30.
    res = process_batch(pipeline, settings, events[20:], load, forecast=forecast)
    due = {fx.patient_id: fx.at_ms for fx in res.outcome.effects if isinstance(fx, ForecastDue)}
    assert set(due) == set(patients)
    assert calls == [2]  # both patients in one forecaster call, once each
    by_patient = {fc.patient_id: fc for fc in res.outcome.forecasts}
    assert set(by_patient) == set(patients)
    for pid, fc in by_patient.items():
        assert fc.at_ms == due[pid] == int((T0 + timedelta(minutes=30)).timestamp() * 1000)
        book = res.states[pid].alerts
        assert book is not None
        assert book.forecast is not None
        assert book.forecast.made_at_ms == fc.at_ms  # stored with the twin: atomic on replay

    sent = [json.loads(value) for key, value in res.effects if b'"forecast"' in value]
    forecasts = [r for r in sent if r["kind"] == "forecast"]
    assert {r["patient_id"] for r in forecasts} == set(patients)
    for r in forecasts:
        assert r["effect_id"] == effect_id("forecast", r["patient_id"], r["at_ms"])
        assert set(r["risk"]) == {str(float(h)) for h in spec.risk_horizons_h}
        assert set(r["quantiles"]) == set(spec.targets)

    lines = forecast_lines(by_patient["tok-a"])
    fields = {
        kv.split("=")[0]
        for line in lines
        if line.startswith("forecasts,")
        for kv in line.split(" ")[1].split(",")
    }
    assert fields == set(SCHEMA["forecasts"]["fields"])  # p02 ... p98: what Grafana plots
    steps = by_patient["tok-a"].quantile_array.shape[1]
    assert sum(line.startswith("forecasts,") for line in lines) == len(spec.targets) * steps
    risk = [line for line in lines if line.startswith("risk,")]
    assert len(risk) == len(spec.risk_horizons_h)
    assert all(line.endswith(f" {by_patient['tok-a'].at_ms}") for line in lines)
    assert any("horizon_h=6 " in line or "horizon_h=6," in line for line in risk)


def test_worker_without_forecaster_leaves_due_unanswered() -> None:
    res = fold(["tok-a"])
    assert any(isinstance(fx, ForecastDue) for fx in res.outcome.effects)
    assert res.outcome.forecasts == []
    assert res.states["tok-a"].alerts is not None
    assert res.states["tok-a"].alerts.forecast is None


def test_a_failing_forecaster_does_not_stop_the_worker_batch() -> None:
    """Forecasts are advisory: the twins, their effects and rule alerts are still produced
    (a raise would fail the batch, and its replay the same way, for ever)."""
    calls = []

    def broken(states, slots):  # type: ignore[no-untyped-def]
        calls.append(len(states))
        raise RuntimeError("forecaster blew up")

    before = _failures()
    res = fold(["tok-a", "tok-b"], broken)
    assert calls == [2]
    assert set(res.states) == {"tok-a", "tok-b"}
    assert all(e.state is not None and e.items == 120 for e in res.states.values())
    assert res.outcome.forecasts == []
    assert not [v for _, v in res.effects if b'"kind":"forecast"' in v]
    assert _failures() - before == 2


def _failures() -> float:
    value = REGISTRY.get_sample_value("vitaltwin_forecast_failures_total")
    return 0.0 if value is None else value


def test_a_failing_forecaster_does_not_stop_the_embedded_runtime(tmp_path: Path) -> None:
    class Broken:
        def forecast_states(self, states, at_ms):  # type: ignore[no-untyped-def]
            raise RuntimeError("forecaster blew up")

    res = fold(["tok-a"])
    states = {k: e.state for k, e in res.states.items() if e.state is not None}
    stage = ForecastStage(Broken(), SqliteStore(tmp_path / "db.sqlite"), None)
    stage.batcher.max_wait_s = 0  # due at once
    before = _failures()
    outcome = Outcome(effects=list(res.outcome.effects), touched=states)
    stage.on_batch(outcome, states)  # must not raise
    assert outcome.forecasts == []
    assert stage.forecasts == 0
    assert stage.batcher.pending == 0
    assert _failures() - before == 1
