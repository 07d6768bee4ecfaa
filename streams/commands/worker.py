"""``vitaltwin worker``: run a faust worker that owns a share of the patients' partitions."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from streams.kafka_settings import KafkaSettings

log = logging.getLogger(__name__)


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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import faust

    from streams.kafka_app import make_app
    from streams.kafka_topics import ensure_topics

    settings = settings_from(
        args, app_id=args.app_id, data_dir=None if args.data_dir is None else Path(args.data_dir)
    )
    ensure_topics(settings)
    app = make_app(settings)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    # faust's Worker handles SIGINT/SIGTERM: it stops the agents, flushes the producer and
    # commits processed offsets before exiting.
    worker.execute_from_commandline()
    return 0
