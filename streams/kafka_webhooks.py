"""Kafka mode webhook delivery: the alerts topic is the durable outbox of record.

A relay consumes ``<prefix>.alerts`` as its own consumer group, routes each notification to the
configured receivers and enqueues the signed messages in a local SQLite outbox *before*
committing the offset: a crash re-reads and re-enqueues, which the outbox ignores (messages are
keyed by webhook-id). A ``Deliverer`` drains the outbox with the Standard Webhooks retry
schedule. Several workers share the alerts partitions through the consumer group.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from kafka import KafkaConsumer

from streams.kafka_settings import KafkaSettings
from streams.webhooks.config import WebhookConfig
from streams.webhooks.delivery import Deliverer
from streams.webhooks.outbox import Outbox
from streams.webhooks.routing import route
from twin.alerting import Notification

log = logging.getLogger(__name__)


class KafkaWebhookRelay:
    def __init__(self, settings: KafkaSettings, config: WebhookConfig, outbox_path: Path) -> None:
        self.settings = settings
        self.config = config
        self.outbox = Outbox(outbox_path)
        self.deliverer = Deliverer(self.outbox, config)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.relayed = 0

    def start(self) -> KafkaWebhookRelay:
        for target, name in ((self._relay, "alert-relay"), (self._deliver, "webhooks")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _deliver(self) -> None:
        self.deliverer.run(self._stop)

    def _relay(self) -> None:
        consumer = KafkaConsumer(
            self.settings.topics.alerts,
            bootstrap_servers=self.settings.bootstrap,
            group_id=f"{self.settings.app_id}-webhooks",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="vitaltwin-webhook-relay",
        )
        try:
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=500)
                notes = []
                for records in polled.values():
                    for rec in records:
                        raw = json.loads(rec.value)
                        raw.pop("v", None)
                        notes.append(Notification.model_validate(raw))
                if notes:
                    self.outbox.enqueue(route(self.config, notes))
                    self.deliverer.wake()
                    self.relayed += len(notes)
                if polled:
                    consumer.commit()  # only after the outbox holds them
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self.deliverer.wake()
        for thread in self._threads:
            thread.join(timeout=10)
