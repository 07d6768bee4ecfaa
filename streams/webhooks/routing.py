"""From notifications to outbound messages: route by receiver, group by patient, build bodies.

``route`` is pure: the same notifications and config give the same messages, byte for byte,
with the same ``webhook_id`` (derived from the receiver and the notification ids). That is what
makes enqueueing idempotent: the runtime may enqueue a batch again after a crash (at-least-once
from Kafka, or a replayed micro-batch) and the outbox keeps one copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streams.webhooks.config import ReceiverConfig, WebhookConfig
from streams.webhooks.payloads import alertmanager_body, encode, vitaltwin_body
from twin.alerting import Notification
from twin.events import derive_event_id


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    webhook_id: str
    receiver: str
    ordering_key: str  # the patient token: messages for one patient go out in order
    body: bytes
    notification_ids: tuple[str, ...]


def webhook_id(receiver: str, notification_ids: Iterable[str]) -> str:
    return "msg_" + derive_event_id("webhook", receiver, *notification_ids)[3:]


def build_message(
    receiver: ReceiverConfig, notes: list[Notification], external_url: str | None
) -> OutboundMessage:
    if receiver.format == "alertmanager":
        payload = alertmanager_body(
            notes, receiver=receiver.name, detail=receiver.detail, external_url=external_url
        )
    else:
        payload = vitaltwin_body(notes, detail=receiver.detail, external_url=external_url)
    ids = tuple(n.notification_id for n in notes)
    return OutboundMessage(
        webhook_id(receiver.name, ids), receiver.name, notes[0].patient_id, encode(payload), ids
    )


def route(config: WebhookConfig, notifications: Iterable[Notification]) -> list[OutboundMessage]:
    """One message per (receiver, patient) in this batch, notifications in their given order."""
    notes = list(notifications)
    out: list[OutboundMessage] = []
    for receiver in config.receivers:
        groups: dict[str, list[Notification]] = {}
        for n in notes:
            if receiver.accepts(n):
                groups.setdefault(n.patient_id, []).append(n)
        out += [build_message(receiver, g, config.external_url) for g in groups.values()]
    return out
