"""Kafka mode alerts: the worker runs the alert policy, the relay delivers signed webhooks, and
a clinician's acknowledgement travels through the commands topic to the owning worker."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from _kafka_helpers import (
    WorkerProcess,
    anchor_time,
    delete_test_topics,
    latest_entries,
    make_edge,
    read_topic,
    unique_settings,
    wait_until,
    workers_cleaned_up,
)
from kafka import KafkaAdminClient, KafkaProducer
from standardwebhooks import Webhook

from streams.alert_store import ForwardingAlertStore
from streams.ingress import SourceKind
from streams.kafka_topics import ensure_topics
from twin.alerting import AlertCommand

pytestmark = pytest.mark.integration


def _receiver_class() -> Any:
    """The loopback HTTP receiver the webhook tests use (tests/streams/test_webhooks_support)."""
    path = Path(__file__).resolve().parents[1] / "streams" / "test_webhooks_support.py"
    spec = importlib.util.spec_from_file_location("webhooks_support", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module.Receiver


Receiver = _receiver_class()

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
SICK = {
    "8867-4": (138, "/min"),
    "9279-1": (29, "/min"),
    "59408-5": (89, "%"),
    "8480-6": (86, "mm[Hg]"),
    "8310-5": (39.4, "Cel"),
}
WELL = {
    "8867-4": (72, "/min"),
    "9279-1": (15, "/min"),
    "59408-5": (97, "%"),
    "8480-6": (124, "mm[Hg]"),
    "8310-5": (36.8, "Cel"),
}


def test_alerts_fire_deliver_and_acknowledge_in_kafka_mode(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> None:
    settings = unique_settings(kafka_bootstrap, "alerts", partitions=2)
    ensure_topics(settings)
    edge, pseudonyms = make_edge(settings, tmp_path / "pseudonyms.db")
    t0 = anchor_time()
    for minute in range(30):
        at = t0 + timedelta(minutes=minute)
        for mrn, vitals in (("MRN-SICK", SICK), ("MRN-WELL", WELL)):
            samples = [
                {
                    "patient_id": mrn,
                    "device_id": f"SN-{mrn}",
                    "observed_at": at.isoformat(),
                    "code": code,
                    "value": value,
                    "unit": unit,
                    "source": "watch",
                }
                for code, (value, unit) in vitals.items()
            ]
            edge.send(SourceKind.WEARABLE, {"samples": samples}, at + timedelta(seconds=5))
    edge.flush()
    sick = pseudonyms.token_for("patient", "MRN-SICK")
    well = pseudonyms.token_for("patient", "MRN-WELL")

    receiver = Receiver().start()
    extra = ["--webhook-url", receiver.url, "--webhook-secret", SECRET, "--webhook-allow-private"]
    worker = WorkerProcess(settings, tmp_path / "w1", "w1", extra=extra)
    with workers_cleaned_up(worker):
        worker.start()
        notes = wait_until(
            lambda: (
                [json.loads(r.value) for r in read_topic(kafka_bootstrap, settings.topics.alerts)]
                or None
            ),
            120,
            "alert notifications",
        )
        rules = {n["rule"] for n in notes if n["patient_id"] == sick}
        assert "news2_high" in rules
        assert not [n for n in notes if n["patient_id"] == well]

        # Delivered, signed, verifiable by an independent implementation.
        wait_until(lambda: receiver.requests or None, 60, "webhook delivery", 0.1)
        first = receiver.requests[0]
        Webhook(SECRET).verify(first.body, first.headers)
        body = first.body.decode()
        assert sick in body
        assert "MRN-SICK" not in body

        # A clinician acknowledges through the Kafka-mode alert store (as the API does).
        high = next(n for n in notes if n["patient_id"] == sick and n["rule"] == "news2_high")
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        store = ForwardingAlertStore(
            tmp_path / "api-alerts.db",
            lambda cmd: producer.send(
                settings.topics.alert_commands,
                key=cmd.patient_id.encode(),
                value=cmd.model_dump_json().encode(),
            ).get(timeout=10),
        )
        store.submit(
            AlertCommand(
                action="acknowledge",
                patient_id=sick,
                alert_id=high["alert_id"],
                by="dr-test",
                at_ms=high["at_ms"],
                command_id="cmd-1",
            ),
            now_ms=high["at_ms"],
        )

        def acknowledged() -> bool | None:
            book = latest_entries(kafka_bootstrap, settings.topics)[sick].alerts
            assert book is not None
            return book.active["news2_high"].status == "acknowledged" or None

        wait_until(acknowledged, 60, "acknowledgement applied by the worker", 0.2)
        producer.close()
    receiver.stop()
    edge.close()
    delete_test_topics(kafka_admin, settings.topic_prefix)
