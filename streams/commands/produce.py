"""``vitaltwin produce``: send a simulated cohort (or a recorded JSON-lines file) into Kafka.

Records pass the edge (pseudonymisation, key = patient token) and go out through kafka-python's
idempotent producer (acks=all). ``--speed`` paces them in simulated time: 60 means one
simulated minute per wall second; 0 sends as fast as the broker takes them. Each record's Kafka
timestamp is its simulated delivery time.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.commands.worker import add_kafka_arguments, settings_from


def register(sub: Any) -> None:
    p = sub.add_parser("produce", help="send a simulated cohort or a recorded file into Kafka")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--simulate", action="store_true", help="a simulated cohort")
    src.add_argument("--file", type=Path, help="a JSON-lines file of samples and FHIR resources")
    p.add_argument("--patients", type=int, default=300)
    p.add_argument("--days", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--speed", type=float, default=0.0, help="simulated seconds per wall second")
    p.add_argument("--pseudonyms", type=Path, default=Path("var/pseudonyms.db"))
    add_kafka_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from streams.kafka_producer import EdgeProducer
    from streams.kafka_topics import ensure_topics
    from streams.pseudonym import Pseudonymiser, PseudonymStore
    from streams.sources import JsonLinesSource, SimulatorSource

    settings = settings_from(args)
    ensure_topics(settings)
    producer = EdgeProducer(settings, Pseudonymiser(PseudonymStore(args.pseudonyms)))
    if args.simulate:
        from simulators.config import SimulationConfig

        source: Any = SimulatorSource(
            SimulationConfig(patients=args.patients, days=args.days, seed=args.seed)
        )
    else:
        source = JsonLinesSource(args.file, lambda: datetime.now(tz=UTC))
    origin: tuple[float, float] | None = None
    with tqdm(unit=" records", file=sys.stderr, mininterval=1.0) as bar:
        for _, record in source.records(None):
            if args.speed > 0:
                sim = record.received_at.timestamp()
                if origin is None:
                    origin = (time.monotonic(), sim)
                wait = origin[0] + (sim - origin[1]) / args.speed - time.monotonic()
                if wait > 0:
                    producer.flush()
                    time.sleep(wait)
            producer.send(record.kind, record.payload, record.received_at)
            bar.update()
    producer.close()
    sys.stdout.write(f"sent {producer.sent} records to {settings.bootstrap}\n")
    return 0
