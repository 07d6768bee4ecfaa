"""``vitaltwin worker``: run a faust worker that owns a share of the patients' partitions."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from streams.kafka_settings import KafkaSettings

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "default"


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VITALTWIN_KAFKA_BOOTSTRAP)")
    parser.add_argument("--prefix", dest="topic_prefix", help="topic name prefix")
    parser.add_argument("--partitions", type=int, help="partitions per topic (fixed once created)")


def settings_from(args: argparse.Namespace, **extra: Any) -> KafkaSettings:
    return KafkaSettings.from_env(
        bootstrap=args.bootstrap,
        topic_prefix=args.topic_prefix,
        partitions=args.partitions,
        **extra,
    )


def register(sub: Any) -> None:
    p = sub.add_parser("worker", help="run a faust worker on Kafka (production runtime)")
    add_kafka_arguments(p)
    p.add_argument("--app-id", help="consumer group / app id (VITALTWIN_APP_ID)")
    p.add_argument("--data-dir", help="worker data directory (VITALTWIN_DATA_DIR)")
    p.add_argument("--loglevel", default="warning")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=DEFAULT_CHECKPOINT,
        help="forecaster checkpoint (the shipped one by default; VITALTWIN_CHECKPOINT)",
    )
    p.add_argument(
        "--no-forecast",
        action="store_true",
        help="run without the TFT forecaster (VITALTWIN_FORECAST=0); twins still say when due",
    )
    from streams.influx import add_influx_arguments
    from streams.webhooks.config import add_webhook_arguments

    add_webhook_arguments(p)
    add_influx_arguments(p)
    p.set_defaults(func=run)


def load_forecaster(args: argparse.Namespace) -> Any | None:
    """The worker's forecaster, or None when switched off (flag or environment)."""
    if args.no_forecast or os.environ.get("VITALTWIN_FORECAST", "1").lower() in ("0", "false"):
        log.info("forecasting off: forecast-due effects are emitted but not answered")
        return None
    from models.fastpath import Forecaster

    checkpoint = Path(os.environ.get("VITALTWIN_CHECKPOINT", args.checkpoint))
    # One torch thread: the worker is one event loop, and a second worker process on the same
    # host scales better than intra-op threads at these batch sizes (see var/bench/forecast).
    return Forecaster.load(checkpoint, threads=1)


def run(args: argparse.Namespace) -> int:
    import faust

    from streams.influx import influx_sink_from_args
    from streams.kafka_app import make_app, tune_gc
    from streams.kafka_topics import ensure_topics
    from streams.kafka_webhooks import KafkaWebhookRelay
    from streams.metrics import serve_metrics
    from streams.webhooks.config import webhook_config_from_args

    settings = settings_from(
        args, app_id=args.app_id, data_dir=None if args.data_dir is None else Path(args.data_dir)
    )
    ensure_topics(settings)
    influx = influx_sink_from_args(args)
    app = make_app(
        settings, sinks=[] if influx is None else [influx], forecaster=load_forecaster(args)
    )
    if args.metrics_port:
        serve_metrics(args.metrics_port)
    webhooks = webhook_config_from_args(args)
    relay = None
    if webhooks.receivers:
        relay = KafkaWebhookRelay(settings, webhooks, settings.data_dir / "outbox.db").start()
    tune_gc()
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    try:
        # faust's Worker handles SIGINT/SIGTERM: it stops the agents, flushes the producer and
        # commits processed offsets before exiting.
        worker.execute_from_commandline()
    finally:
        if relay is not None:
            relay.stop()
        if influx is not None:
            influx.close()
    return 0
