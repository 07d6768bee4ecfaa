"""``vitaltwin serve``: the HTTP API and the ward dashboard, over either runtime's twins.

Embedded (default): reads ``--db`` and ``--alerts-db``; POSTed data is applied to ``--db`` by
this process, so do not run an embedded runtime on the same store at the same time (``vitaltwin
demo`` serves next to its own runtime instead). Kafka (``--kafka`` or ``VITALTWIN_RUNTIME=kafka``):
materialises the twin-state and alerts topics; POSTed data goes to the input topics.

Tokens come from ``VITALTWIN_API_TOKENS`` / ``VITALTWIN_API_TOKENS_FILE`` (docs/api.md); the
server refuses to start without any.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from streams.commands.worker import add_kafka_arguments, settings_from

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve the HTTP API and the ward dashboard")
    p.add_argument("--db", type=Path, default=Path("var/vitaltwin.db"), help="embedded store")
    p.add_argument(
        "--alerts-db",
        type=Path,
        default=Path(os.environ.get("VITALTWIN_ALERTS_DB", "var/alerts.db")),
        help="alert store (Kafka mode: the API's own materialisation of the alerts topic)",
    )
    p.add_argument("--pseudonyms", type=Path, default=Path("var/pseudonyms.db"))
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--kafka", action="store_true", help="read the Kafka topics, not --db")
    p.add_argument("--no-ingest", action="store_true", help="refuse POSTed data (503)")
    p.add_argument("--openapi", type=Path, metavar="PATH", help="write the schema and exit")
    add_kafka_arguments(p)
    p.set_defaults(func=run)


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI schema (the same for every runtime and configuration)."""
    from streams.api import EmbeddedView, TokenAuth, create_app
    from streams.sqlite_store import SqliteStore

    app = create_app(EmbeddedView(SqliteStore(":memory:")), auth=TokenAuth({}))
    return app.openapi()


def run(args: argparse.Namespace) -> int:
    if args.openapi is not None:
        args.openapi.write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")
        sys.stdout.write(f"wrote {args.openapi}\n")
        return 0

    from streams.api import EventHub, TokenAuth, tokens_from_env
    from streams.api.server import serve_forever
    from streams.errors import StreamsError

    try:
        auth = TokenAuth(tokens_from_env())
    except StreamsError as exc:
        sys.stderr.write(f"vitaltwin serve: {exc}\n")
        return 2
    if len(auth) == 0:
        sys.stderr.write(
            "vitaltwin serve: no API tokens; set VITALTWIN_API_TOKENS='TOKEN:ROLE,...' or "
            "VITALTWIN_API_TOKENS_FILE (roles: reader, clinician, ingest)\n"
        )
        return 2
    hub = EventHub()
    if args.kafka or os.environ.get("VITALTWIN_RUNTIME") == "kafka":
        app, closers = _kafka(args, auth, hub)
    else:
        app, closers = _embedded(args, auth, hub)
    sys.stdout.write(f"vitaltwin API on http://{args.host}:{args.port}/ (ward dashboard at /)\n")
    sys.stdout.flush()
    try:
        serve_forever(app, args.host, args.port)
    finally:
        hub.close()
        for close in closers:
            close()
    return 0


def _embedded(args: argparse.Namespace, auth: Any, hub: Any) -> tuple[Any, list[Any]]:
    from datetime import UTC, datetime

    from streams.alert_store import AlertStore
    from streams.api import EmbeddedView, StoreIngestor, create_app
    from streams.api.poller import StorePoller
    from streams.ingress import Ingress
    from streams.pipeline import Pipeline
    from streams.pseudonym import Pseudonymiser, PseudonymStore
    from streams.sqlite_store import SqliteStore

    store = SqliteStore(args.db)
    alerts = AlertStore(args.alerts_db)
    ingestor = None
    closers: list[Any] = []
    if not args.no_ingest:
        pseudonyms = PseudonymStore(args.pseudonyms)
        closers.append(pseudonyms.close)
        ingestor = StoreIngestor(
            store, Pipeline(Ingress(Pseudonymiser(pseudonyms))), lambda: datetime.now(tz=UTC)
        )
        ingestor.on_commit.append(hub.publish)
    app = create_app(
        EmbeddedView(store, alerts), auth=auth, alerts=alerts, ingestor=ingestor, hub=hub
    )
    poller = StorePoller(store, alerts, hub).start()
    return app, [poller.stop, *closers, alerts.close, store.close]


def _kafka(args: argparse.Namespace, auth: Any, hub: Any) -> tuple[Any, list[Any]]:
    from datetime import UTC, datetime

    from kafka import KafkaProducer

    from streams.alert_store import ForwardingAlertStore
    from streams.api import KafkaIngestor, create_app
    from streams.api.kafka_view import KafkaView
    from streams.ingress import Ingress
    from streams.kafka_producer import EdgeProducer
    from streams.kafka_topics import ensure_topics
    from streams.pseudonym import Pseudonymiser, PseudonymStore
    from twin.alerting import AlertCommand

    settings = settings_from(args)
    ensure_topics(settings)
    commands = KafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        enable_idempotence=True,
        client_id="vitaltwin-api",
    )

    def send(cmd: AlertCommand) -> None:
        # Synchronous: the clinician's request returns only once the command is in Kafka.
        commands.send(
            settings.topics.alert_commands,
            key=cmd.patient_id.encode(),
            value=cmd.model_dump_json().encode(),
        ).get(timeout=10)

    alerts = ForwardingAlertStore(args.alerts_db, send)
    view = KafkaView(settings, alerts, hub=hub).start()
    ingestor = None
    closers: list[Any] = [view.close]
    if not args.no_ingest:
        pseudonymiser = Pseudonymiser(PseudonymStore(args.pseudonyms))
        ingestor = KafkaIngestor(
            EdgeProducer(settings, pseudonymiser),
            Ingress(pseudonymiser),
            lambda: datetime.now(tz=UTC),
        )
        closers.append(ingestor.close)
    app = create_app(view, auth=auth, alerts=alerts, ingestor=ingestor, hub=hub)
    return app, [*closers, alerts.close, commands.close]
