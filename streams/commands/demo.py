"""``vitaltwin demo``: the whole pipeline in one process, no Kafka, no Docker.

A simulated ward streams through ingress (pseudonymisation, validation, dead letters), the twin,
the alert policy and the webhook outbox into SQLite, in accelerated time, with a one-line live
summary each second. Ctrl-C (or ``--duration``) stops it cleanly; running it again resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from streams.commands import positive_int

BANDS = ("routine", "low", "low_medium", "medium", "high")


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a simulated ward through the whole pipeline, embedded")
    p.add_argument("--patients", type=int, default=300)
    p.add_argument("--days", type=float, default=2.0, help="simulated days to stream")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--speed",
        type=float,
        default=600.0,
        help="simulated seconds per wall second (0: as fast as possible)",
    )
    p.add_argument("--duration", type=float, help="stop after this many wall seconds")
    p.add_argument(
        "--max-records",
        type=positive_int,
        help="stop after this many records (counted from the resume)",
    )
    p.add_argument("--dir", type=Path, default=Path("var/demo"), help="where the stores live")
    p.add_argument("--reset", action="store_true", help="start over (deletes --dir's stores)")
    p.add_argument("--quiet", action="store_true", help="no live summary, only the final one")
    p.add_argument("--port", type=int, default=8000, help="ward dashboard and API port")
    p.add_argument("--no-serve", action="store_true", help="do not start the API/dashboard")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "default",
        help="forecaster checkpoint (the shipped one by default)",
    )
    p.add_argument("--no-forecast", action="store_true", help="run without the TFT forecaster")
    p.add_argument(
        "--forecast-workers",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="forecast batch chunks run at once, one core each (default: up to 2)",
    )
    from streams.influx import add_influx_arguments
    from streams.webhooks.config import add_webhook_arguments

    add_webhook_arguments(p)
    add_influx_arguments(p)
    p.set_defaults(func=run)


def summary_line(stats: Any, alerts: Any, dead: int) -> str:
    sim = datetime.fromtimestamp(stats.sim_time_ms / 1000, tz=UTC).strftime("%m-%d %H:%M")
    bands = " ".join(f"{b.replace('_', '-')} {stats.bands.get(b, 0)}" for b in BANDS)
    firing = alerts.firing if alerts is not None else 0
    return (
        f"[sim {sim}] {stats.events_per_s:>8,.0f} ev/s | NEWS2 {bands} | "
        f"alerts firing {firing} | dead-letters {dead}"
    )


def _check_config(directory: Path, config: dict[str, Any], reset: bool) -> None:
    marker = directory / "demo.json"
    if reset and directory.exists():
        for name in ("vitaltwin.db", "pseudonyms.db", "alerts.db", "outbox.db", "demo.json"):
            for suffix in ("", "-wal", "-shm"):
                (directory / f"{name}{suffix}").unlink(missing_ok=True)
    if marker.exists():
        previous = json.loads(marker.read_text())
        if previous != config:
            raise SystemExit(
                f"{directory} holds a demo with other settings {previous}; "
                "use --reset to start over or --dir for a new one"
            )
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(config, sort_keys=True))


def _serve(store: Any, alerts: Any, port: int) -> tuple[Any, Any, str]:
    """Start the API and ward page; without configured tokens, mint a clinician token."""
    import secrets

    from streams.api import (
        EmbeddedView,
        EventHub,
        Principal,
        Role,
        TokenAuth,
        create_app,
        start_in_thread,
        tokens_from_env,
    )

    tokens = tokens_from_env()
    minted = None
    if not tokens:
        minted = secrets.token_urlsafe(24)
        tokens = {minted: Principal("demo", Role.CLINICIAN)}
    hub = EventHub()
    # No ingestion in the demo: a POSTed sample stamped with today's time would move a
    # simulated twin's clock to now.
    app = create_app(
        EmbeddedView(store, alerts.alerts),
        auth=TokenAuth(tokens),
        alerts=alerts.alerts,
        ingestor=None,
        hub=hub,
    )
    server = start_in_thread(app, "127.0.0.1", port)
    url = f"http://127.0.0.1:{server.port}/"
    if minted is not None:
        url += f"#token={minted}"
    return server, hub, url


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from simulators.config import SimulationConfig
    from streams.alert_stage import AlertStage
    from streams.alert_store import AlertStore
    from streams.embedded import EmbeddedRuntime
    from streams.influx import influx_sink_from_args
    from streams.ingress import Ingress
    from streams.pipeline import Pipeline
    from streams.pseudonym import Pseudonymiser, PseudonymStore
    from streams.sources import SimulatorSource
    from streams.sqlite_store import SqliteStore
    from streams.webhooks.config import webhook_config_from_args
    from streams.webhooks.outbox import Outbox

    config = {"patients": args.patients, "days": args.days, "seed": args.seed}
    _check_config(args.dir, config, args.reset)
    store = SqliteStore(args.dir / "vitaltwin.db")
    pseudonyms = PseudonymStore(args.dir / "pseudonyms.db")
    alerts = AlertStage(
        store,
        AlertStore(args.dir / "alerts.db"),
        outbox=Outbox(args.dir / "outbox.db"),
        webhooks=webhook_config_from_args(args),
    )
    sim = SimulationConfig(patients=args.patients, days=args.days, seed=args.seed)
    influx = influx_sink_from_args(args)
    hooks = []
    forecasts = None
    if not args.no_forecast:
        from streams.forecast_stage import ForecastStage

        # Before the alert stage, so a batch's forecasts reach the forecast rule in that batch.
        forecasts = ForecastStage.load(
            args.checkpoint, store, alerts, workers=args.forecast_workers
        )
        hooks.append(forecasts.on_batch)
    hooks.append(alerts.on_batch)
    server = None
    if not args.no_serve:
        server, hub, url = _serve(store, alerts, args.port)
        hooks.append(hub.publish)  # after the alert stage, so pushed tiles carry new alerts
    runtime = EmbeddedRuntime(
        Pipeline(Ingress(Pseudonymiser(pseudonyms))),
        store,
        SimulatorSource(sim),
        sinks=[] if influx is None else [influx],
        on_batch=hooks,
        speed=args.speed,
    )
    runtime.install_signal_handlers()
    alerts.start_delivery()
    out.write(
        f"vitaltwin demo: {args.patients} simulated patients, {args.days:g} days at "
        f"{args.speed:g}x, stores in {args.dir} (Ctrl-C stops; run again to resume)\n"
    )
    if server is not None:
        out.write(f"ward dashboard: {url}\n")
    out.flush()

    done = threading.Event()

    def report() -> None:
        while not done.wait(1.0):
            if not args.quiet and runtime.stats.batches:
                out.write(
                    summary_line(runtime.stats, alerts.counts, store.accounting().dead_lettered)
                    + "\n"
                )
                out.flush()

    reporter = threading.Thread(target=report, name="summary", daemon=True)
    reporter.start()
    started = time.monotonic()
    try:
        stats = runtime.run(duration_s=args.duration, max_records=args.max_records)
        if forecasts is not None:
            forecasts.flush(runtime.states)
    finally:
        done.set()
        reporter.join(timeout=2)
        alerts.stop()
        if server is not None:
            server.stop()
    acc = store.accounting()
    out.write(summary_line(stats, alerts.counts, acc.dead_lettered) + "\n")
    out.write(
        f"done in {time.monotonic() - started:.1f} s: {len(runtime.states)} twins; received "
        f"{acc.received} = processed {acc.processed} + dead-lettered {acc.dead_lettered}; "
        f"{0 if forecasts is None else forecasts.forecasts} forecasts, "
        f"{alerts.counts.notifications} alert notifications "
        f"({', '.join(f'{k} {v}' for k, v in sorted(alerts.counts.by_rule.items())) or 'none'})\n"
    )
    return 0
