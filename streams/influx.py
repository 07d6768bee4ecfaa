"""InfluxDB v2 sink: vitals, scores, forecasts, alerts and pipeline health as line protocol.

Points are timestamped by *event* time (millisecond precision) and tagged by the patient token
and signal: a point with the same measurement, tag set and time overwrites the earlier one, so
re-writing a batch after a crash is idempotent.

influxdb-client's batching write API buffers on a background thread and reports failures to
callbacks, not to the caller. This writer turns that into something a runtime can rely on:
failures are collected and raised from ``flush``/``close``; ``write`` blocks while more than
``max_pending`` lines are in flight (back-pressure instead of unbounded memory); ``close`` flushes
the buffer before returning.

``SCHEMA`` names every measurement, tag and field this writer produces; the Grafana dashboards
are validated against it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streams.errors import StreamsError
from streams.pipeline import Outcome
from twin import TwinState
from twin.effects import AlertCandidate, ScoreChanged

log = logging.getLogger(__name__)

# measurement -> {"tags": [...], "fields": [...]}
SCHEMA: dict[str, dict[str, tuple[str, ...]]] = {
    "vitals": {"tags": ("patient", "signal"), "fields": ("value",)},
    # The band is a field, not a tag: as a tag, two bands at one instant would be two series
    # and both would survive; as a field the last score at that instant wins.
    "scores": {"tags": ("patient",), "fields": ("news2", "qsofa", "band")},
    "alert_candidates": {"tags": ("patient", "rule"), "fields": ("news2", "qsofa", "band")},
    "forecasts": {
        "tags": ("patient", "signal", "horizon_min"),
        "fields": ("p02", "p10", "p25", "p50", "p75", "p90", "p98"),
    },
    "risk": {"tags": ("patient", "horizon_h"), "fields": ("probability", "lower", "upper")},
    "alerts": {"tags": ("patient", "rule", "severity", "status"), "fields": ("count",)},
    # Pipeline health, timestamped by wall clock (it is about the service, not the patients);
    # each runtime writes the fields it can measure.
    "pipeline": {
        "tags": ("runtime",),
        "fields": ("events", "effects", "dead_letters", "batch_ms", "lag_ms", "forecast_ms"),
    },
    "dead_letters": {"tags": ("reason", "source_kind"), "fields": ("count",)},
    "webhooks": {"tags": ("receiver", "outcome"), "fields": ("count", "latency_ms")},
}


class InfluxWriteError(StreamsError):
    """Points could not be written after the client's retries."""


def _escape_tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(value: float | int | str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def line(measurement: str, tags: dict[str, str], fields: dict[str, Any], t_ms: int) -> str:
    """One line of InfluxDB line protocol (millisecond precision). Checked against SCHEMA."""
    spec = SCHEMA[measurement]
    assert set(tags) <= set(spec["tags"]), (measurement, tags)
    assert set(fields) <= set(spec["fields"]), (measurement, fields)
    tag_part = "".join(f",{k}={_escape_tag(v)}" for k, v in sorted(tags.items()) if v != "")
    field_part = ",".join(f"{k}={_field(v)}" for k, v in fields.items())
    return f"{measurement}{tag_part} {field_part} {t_ms}"


def outcome_lines(outcome: Outcome) -> list[str]:
    """The points a processed micro-batch produces."""
    lines: list[str] = []
    for patient, signal, t_ms, value in outcome.readings():
        lines.append(
            line("vitals", {"patient": patient, "signal": signal}, {"value": float(value)}, t_ms)
        )
    for fx in outcome.effects:
        if isinstance(fx, ScoreChanged):
            lines.append(
                line(
                    "scores",
                    {"patient": fx.patient_id},
                    {"news2": fx.news2_total, "qsofa": fx.qsofa_total, "band": fx.band},
                    fx.at_ms,
                )
            )
        elif isinstance(fx, AlertCandidate):
            lines.append(
                line(
                    "alert_candidates",
                    {"patient": fx.patient_id, "rule": fx.rule},
                    {"news2": fx.news2_total, "qsofa": fx.qsofa_total, "band": fx.band},
                    fx.at_ms,
                )
            )
    for fc in outcome.forecasts:
        lines.extend(forecast_lines(fc))
    dead_by_reason: dict[tuple[str, str], int] = {}
    for dl in outcome.dead:
        key = (dl.reason, dl.kind)
        dead_by_reason[key] = dead_by_reason.get(key, 0) + 1
    for (reason, kind), count in sorted(dead_by_reason.items()):
        t = max((d.received_at_ms for d in outcome.dead), default=0)
        lines.append(
            line("dead_letters", {"reason": reason, "source_kind": kind}, {"count": count}, t)
        )
    return lines


def forecast_lines(fc: Any) -> list[str]:
    """A ``models.fastpath.PatientForecast`` as ``forecasts`` and ``risk`` points.

    Timestamped by when the forecast was made (its slot), tagged by horizon: a forecast
    re-made for the same slot after a crash overwrites its points, and "the latest forecast"
    is the last point per horizon, whatever the dashboard's time range.
    """
    fields_of = [f"p{round(level * 100):02d}" for level in fc.quantile_levels]
    q = fc.quantile_array
    lines: list[str] = []
    for k, target in enumerate(fc.targets):
        for step in range(q.shape[1]):
            horizon = str((step + 1) * fc.step_minutes)
            values = {
                name: float(q[k, step, j])
                for j, name in enumerate(fields_of)
                if math.isfinite(float(q[k, step, j]))
            }
            if values:
                tags = {"patient": fc.patient_id, "signal": target, "horizon_min": horizon}
                lines.append(line("forecasts", tags, values, fc.at_ms))
    for h, p in fc.risk.items():
        values = {"probability": float(p)}
        for name, bound in (("lower", fc.risk_low.get(h)), ("upper", fc.risk_high.get(h))):
            if bound is not None and math.isfinite(float(bound)):
                values[name] = float(bound)
        tags = {"patient": fc.patient_id, "horizon_h": f"{float(h):g}"}
        lines.append(line("risk", tags, values, fc.at_ms))
    return lines


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    url: str
    token: str
    org: str
    bucket: str
    batch_size: int = 5000
    flush_interval_ms: int = 1000
    max_pending: int = 200_000
    timeout_ms: int = 10_000
    # The client's retry policy, spelled out because ``_confirm_timeout_s`` is derived from it.
    max_retries: int = 3
    retry_interval_ms: int = 5_000  # backoffs 5-10 s, 10-20 s, 20-40 s


_MAX_RETRY_DELAY_MS = 125_000


class InfluxSink:
    """Writes each micro-batch's points; safe to call from the runtime thread."""

    def __init__(self, config: InfluxConfig, runtime: str = "embedded") -> None:
        from influxdb_client import InfluxDBClient, WriteOptions

        self.config = config
        self.runtime = runtime
        self._client = InfluxDBClient(
            url=config.url, token=config.token, org=config.org, timeout=config.timeout_ms
        )
        self._errors: list[str] = []
        self._pending = 0
        self._cond = threading.Condition()
        self.written = 0
        self._api = self._client.write_api(
            write_options=WriteOptions(
                batch_size=config.batch_size,
                flush_interval=config.flush_interval_ms,
                max_retries=config.max_retries,
                retry_interval=config.retry_interval_ms,
                exponential_base=2,
                max_retry_delay=_MAX_RETRY_DELAY_MS,
                max_retry_time=30_000,
                max_close_wait=60_000,
            ),
            success_callback=self._on_success,
            error_callback=self._on_error,
        )

    def _lines_in(self, data: Any) -> int:
        text = data.decode() if isinstance(data, bytes) else str(data)
        return text.count("\n") + 1 if text else 0

    def _on_success(self, conf: Any, data: Any) -> None:
        with self._cond:
            n = self._lines_in(data)
            self._pending -= n
            self.written += n
            self._cond.notify_all()

    def _on_error(self, conf: Any, data: Any, exc: BaseException) -> None:
        with self._cond:
            self._pending -= self._lines_in(data)
            # The message names the failure, never the points (they carry patient tokens).
            self._errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")
            self._cond.notify_all()
        log.error("InfluxDB write failed after retries: %s", type(exc).__name__)

    def write_lines(self, lines: Iterable[str]) -> None:
        batch = list(lines)
        if not batch:
            return
        with self._cond:
            while self._pending > self.config.max_pending and not self._errors:
                self._cond.wait(timeout=1.0)
            self._pending += len(batch)
        self._api.write(
            bucket=self.config.bucket, org=self.config.org, record=batch, write_precision="ms"
        )
        self._raise_errors()

    def write(self, outcome: Outcome, states: dict[str, TwinState]) -> None:
        health = line(
            "pipeline",
            {"runtime": self.runtime},
            {
                "events": outcome.n_events,
                "effects": len(outcome.effects),
                "dead_letters": len(outcome.dead),
            },
            int(time.time() * 1000),
        )
        self.write_lines([*outcome_lines(outcome), health])

    def _confirm_timeout_s(self) -> float:
        """Longest one batch can take from hand-over to its callback: the batching window, every
        attempt timing out, every retry backoff at its maximum, and some slack."""
        retries = self.config.max_retries
        backoff_ms = sum(
            min(self.config.retry_interval_ms << n, _MAX_RETRY_DELAY_MS)
            for n in range(1, retries + 1)
        )
        attempts_ms = (retries + 1) * self.config.timeout_ms
        return (self.config.flush_interval_ms + attempts_ms + backoff_ms) / 1000 + 5

    def flush(self) -> None:
        """Wait until every line handed over is confirmed; raise if any write failed.

        The client writes its batches one at a time: while callbacks keep arriving this waits.
        If none arrives within the longest a batch can take, the pending lines are reported as
        failed instead of being assumed written.
        """
        self._api.flush()  # a no-op in influxdb-client 1.x; batches leave on the flush interval
        limit_s = self._confirm_timeout_s()
        with self._cond:
            while self._pending > 0 and not self._errors:
                if not self._cond.wait(timeout=limit_s):
                    self._errors.append(
                        f"TimeoutError: {self._pending} line(s) unconfirmed after {limit_s:.0f} s"
                    )
        self._raise_errors()

    def _raise_errors(self) -> None:
        if self._errors:
            errors, self._errors = self._errors, []
            raise InfluxWriteError(f"{len(errors)} InfluxDB write(s) failed: {errors[0]}")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._api.close()
            self._client.close()
        self._raise_errors()  # failures reported while the client drained its buffer


def add_influx_arguments(parser: Any) -> None:
    """``--influx-*`` flags (defaults from ``VITALTWIN_INFLUX_*``); no URL means no InfluxDB."""
    import os

    group = parser.add_argument_group("InfluxDB sink")
    group.add_argument("--influx-url", default=os.environ.get("VITALTWIN_INFLUX_URL"))
    group.add_argument("--influx-token", default=os.environ.get("VITALTWIN_INFLUX_TOKEN", ""))
    group.add_argument("--influx-org", default=os.environ.get("VITALTWIN_INFLUX_ORG", "vitaltwin"))
    group.add_argument(
        "--influx-bucket", default=os.environ.get("VITALTWIN_INFLUX_BUCKET", "vitaltwin")
    )


def influx_sink_from_args(args: Any) -> InfluxSink | None:
    if not getattr(args, "influx_url", None):
        return None
    return InfluxSink(
        InfluxConfig(
            url=args.influx_url,
            token=args.influx_token,
            org=args.influx_org,
            bucket=args.influx_bucket,
        )
    )
