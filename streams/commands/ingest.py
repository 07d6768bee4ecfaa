"""``vitaltwin ingest FILE``: read JSON lines of wearable samples and FHIR resources/Bundles into
the configured runtime: the embedded store (default) or Kafka (``--kafka`` or
``VITALTWIN_RUNTIME=kafka``)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.commands.worker import add_kafka_arguments, settings_from


def register(sub: Any) -> None:
    p = sub.add_parser("ingest", help="ingest a JSON-lines file into the configured runtime")
    p.add_argument("file", type=Path)
    p.add_argument(
        "--kafka", action="store_true", help="send to Kafka instead of the embedded store"
    )
    p.add_argument("--db", type=Path, default=Path("var/vitaltwin.db"), help="embedded store")
    p.add_argument("--pseudonyms", type=Path, default=Path("var/pseudonyms.db"))
    add_kafka_arguments(p)
    p.set_defaults(func=run)


def _now() -> datetime:
    return datetime.now(tz=UTC)


def run(args: argparse.Namespace) -> int:
    from streams.pseudonym import Pseudonymiser, PseudonymStore
    from streams.sources import JsonLinesSource

    pseudonymiser = Pseudonymiser(PseudonymStore(args.pseudonyms))
    source = JsonLinesSource(args.file, _now)
    if args.kafka or os.environ.get("VITALTWIN_RUNTIME") == "kafka":
        from streams.kafka_producer import EdgeProducer
        from streams.kafka_topics import ensure_topics

        settings = settings_from(args)
        ensure_topics(settings)
        producer = EdgeProducer(settings, pseudonymiser)
        for _, record in source.records(None):
            producer.send(record.kind, record.payload, record.received_at)
        producer.close()
        sys.stdout.write(f"sent {producer.sent} records to {settings.bootstrap}\n")
        return 0

    from streams.embedded import EmbeddedRuntime
    from streams.ingress import Ingress
    from streams.pipeline import Pipeline
    from streams.sqlite_store import SqliteStore

    store = SqliteStore(args.db)
    runtime = EmbeddedRuntime(Pipeline(Ingress(pseudonymiser)), store, source)
    runtime.install_signal_handlers()
    stats = runtime.run()
    acc = store.accounting()
    sys.stdout.write(
        f"{stats.records} records -> {stats.events} events, {stats.effects} effects; "
        f"received {acc.received} = processed {acc.processed} + dead-lettered "
        f"{acc.dead_lettered}\n"
    )
    return 0
