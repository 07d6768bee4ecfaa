"""Prometheus metrics for both runtimes and the API (``prometheus_client``).

The API serves them on ``/metrics`` (bearer token, any role that can read); a Kafka worker,
which has no HTTP server, can call ``serve_metrics(port)``. Runtimes report through the
functions below, never by touching the metric objects, so names and labels stay in one place:

| metric | type | labels | reported by |
|---|---|---|---|
| vitaltwin_events_total | counter | topic | ``observe_batch`` (rate() = events/s) |
| vitaltwin_records_total | counter | topic | ``observe_batch`` |
| vitaltwin_effects_total | counter | kind | ``observe_batch`` |
| vitaltwin_dead_letters_total | counter | reason | ``observe_batch`` |
| vitaltwin_batch_seconds | histogram | topic | ``observe_batch`` |
| vitaltwin_consumer_lag | gauge | topic, partition | ``set_consumer_lag`` (records behind) |
| vitaltwin_event_to_effect_seconds | histogram | | ``observe_event_to_effect`` |
| vitaltwin_forecast_seconds | histogram | | ``observe_forecast`` |
| vitaltwin_forecast_failures_total | counter | | ``observe_forecast_failure`` (twins left unforecast) |
| vitaltwin_webhook_deliveries_total | counter | receiver, outcome | ``observe_webhook`` |
| vitaltwin_webhook_seconds | histogram | receiver | ``observe_webhook`` |
| vitaltwin_api_requests_total | counter | route, method, status | the API |

Labels never carry a patient token: cardinality stays bounded and no identifier leaves through
the metrics endpoint. Metrics live in their own ``REGISTRY`` (plus the process collector), so
importing another library that uses the global registry cannot collide with ours.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

EVENTS = Counter("vitaltwin_events", "Events applied to twins", ["topic"], registry=REGISTRY)
RECORDS = Counter(
    "vitaltwin_records",
    "Input items received (events or dead letters)",
    ["topic"],
    registry=REGISTRY,
)
EFFECTS = Counter("vitaltwin_effects", "Effects emitted", ["kind"], registry=REGISTRY)
DEAD_LETTERS = Counter(
    "vitaltwin_dead_letters", "Inputs dead-lettered", ["reason"], registry=REGISTRY
)
BATCH_SECONDS = Histogram(
    "vitaltwin_batch_seconds",
    "Wall time to process and commit one micro-batch",
    ["topic"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "vitaltwin_consumer_lag",
    "Records between the committed/consumed offset and the log end",
    ["topic", "partition"],
    registry=REGISTRY,
)
EVENT_TO_EFFECT = Histogram(
    "vitaltwin_event_to_effect_seconds",
    "Wall time from receiving an input to its effects",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
FORECAST_SECONDS = Histogram(
    "vitaltwin_forecast_seconds",
    "Wall time of one forecast call (a batch of patients)",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
FORECAST_FAILURES = Counter(
    "vitaltwin_forecast_failures",
    "Due twins left without a forecast because the forecaster raised",
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "vitaltwin_webhook_deliveries",
    "Webhook delivery attempts by outcome",
    ["receiver", "outcome"],
    registry=REGISTRY,
)
WEBHOOK_SECONDS = Histogram(
    "vitaltwin_webhook_seconds",
    "Webhook delivery latency",
    ["receiver"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "vitaltwin_api_requests", "API requests", ["route", "method", "status"], registry=REGISTRY
)


def observe_batch(outcome: Any, batch_seconds: float, *, topic: str = "embedded") -> None:
    """One committed micro-batch (a ``streams.pipeline.Outcome``)."""
    EVENTS.labels(topic).inc(outcome.n_events)
    RECORDS.labels(topic).inc(outcome.n_events + len(outcome.dead))
    kinds: dict[str, int] = {}
    for fx in outcome.effects:
        kinds[fx.kind] = kinds.get(fx.kind, 0) + 1
    for kind, n in kinds.items():
        EFFECTS.labels(kind).inc(n)
    for dl in outcome.dead:
        DEAD_LETTERS.labels(dl.reason).inc()
    BATCH_SECONDS.labels(topic).observe(batch_seconds)


def set_consumer_lag(topic: str, partition: int, records_behind: int) -> None:
    CONSUMER_LAG.labels(topic, str(partition)).set(max(records_behind, 0))


def observe_event_to_effect(seconds: float) -> None:
    EVENT_TO_EFFECT.observe(seconds)


def observe_forecast(seconds: float) -> None:
    FORECAST_SECONDS.observe(seconds)


def observe_forecast_failure(twins: int) -> None:
    FORECAST_FAILURES.inc(twins)


def observe_webhook(receiver: str, outcome: str, seconds: float | None = None) -> None:
    """One delivery attempt: ``outcome`` e.g. delivered, retry, failed, disabled."""
    WEBHOOKS.labels(receiver, outcome).inc()
    if seconds is not None:
        WEBHOOK_SECONDS.labels(receiver).observe(seconds)


def observe_api_request(route: str, method: str, status: int) -> None:
    API_REQUESTS.labels(route, method, str(status)).inc()


def exposition() -> tuple[bytes, str]:
    """The text exposition format and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE


def serve_metrics(port: int, addr: str = "127.0.0.1") -> Any:
    """A bare metrics endpoint for processes without the API (no auth: bind it privately)."""
    return start_http_server(port, addr=addr, registry=REGISTRY)
