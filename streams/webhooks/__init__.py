"""Alert webhooks: Standard Webhooks signing, routing, payloads, a durable outbox, delivery.

Flow::

    notifications (twin.alerting.evaluate)
        -> route(config, notifications)      one message per receiver and patient (pure)
        -> Outbox.enqueue(messages, now_ms)   SQLite, idempotent on webhook-id
        -> Deliverer.run(stop)                sign, POST, retry, dead-letter

Errors are in ``streams.webhooks.errors`` (all ``streams.errors.StreamsError``).
"""

from streams.webhooks.config import (
    STANDARD_SCHEDULE_S,
    ReceiverConfig,
    WebhookConfig,
    add_webhook_arguments,
    load_webhook_config,
    webhook_config_from_args,
)
from streams.webhooks.delivery import Deliverer, PassReport
from streams.webhooks.errors import (
    SecretError,
    SignatureError,
    SsrfRefused,
    TransportError,
    WebhookError,
)
from streams.webhooks.outbox import DeadLetter, Outbox
from streams.webhooks.routing import OutboundMessage, route
from streams.webhooks.signing import Secret, generate_secret, sign_headers, verify
from streams.webhooks.transport import HttpTransport, Response, Transport

__all__ = [
    "STANDARD_SCHEDULE_S",
    "DeadLetter",
    "Deliverer",
    "HttpTransport",
    "OutboundMessage",
    "Outbox",
    "PassReport",
    "ReceiverConfig",
    "Response",
    "Secret",
    "SecretError",
    "SignatureError",
    "SsrfRefused",
    "Transport",
    "TransportError",
    "WebhookConfig",
    "WebhookError",
    "add_webhook_arguments",
    "generate_secret",
    "load_webhook_config",
    "route",
    "sign_headers",
    "verify",
    "webhook_config_from_args",
]
