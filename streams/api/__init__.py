"""The HTTP API and built-in ward dashboard over either runtime's twins.

Modules: ``app`` (routes), ``views`` (read models: embedded and the ``TwinView`` protocol),
``kafka_view`` (materialised view of the Kafka topics), ``ingest`` (POSTed data through the
shared ingress), ``hub`` (live updates as Server-Sent Events), ``auth`` (tokens and roles),
``middleware`` (size limit, headers, logging), ``server`` (uvicorn), ``errors``, ``models``.
"""

from streams.api.app import create_app
from streams.api.auth import Principal, Role, TokenAuth, tokens_from_env
from streams.api.hub import EventHub
from streams.api.ingest import Ingestor, KafkaIngestor, RuntimeInbox, StoreIngestor
from streams.api.server import ServerHandle, start_in_thread
from streams.api.views import EmbeddedView, TwinView

__all__ = [
    "EmbeddedView",
    "EventHub",
    "Ingestor",
    "KafkaIngestor",
    "Principal",
    "Role",
    "RuntimeInbox",
    "ServerHandle",
    "StoreIngestor",
    "TokenAuth",
    "TwinView",
    "create_app",
    "start_in_thread",
    "tokens_from_env",
]
