"""The Kafka-mode API: a materialised view of the twin-state, alerts and effects topics, read
from a real broker (tests/integration/conftest.py starts one when none listens)."""

from __future__ import annotations

import importlib.util
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import CLINICIAN, READER, auth, bearer
from fastapi.testclient import TestClient
from kafka import KafkaAdminClient, KafkaProducer
from ward_fixtures import Ward

from streams.alert_store import AlertStore
from streams.api import EventHub, create_app
from streams.api.kafka_view import KafkaView
from streams.kafka_batch import Entry
from streams.kafka_settings import KafkaSettings
from twin.alerting import evaluate

# The broker fixtures live with the integration tests; load them under another module name
# (two modules called "conftest" cannot both be imported).
_spec = importlib.util.spec_from_file_location(
    "integration_fixtures", Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
)
assert _spec is not None
assert _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
kafka_bootstrap = _fixtures.kafka_bootstrap

pytestmark = pytest.mark.integration


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[KafkaSettings]:
    settings = KafkaSettings(
        bootstrap=kafka_bootstrap, topic_prefix=f"vt-api-{uuid.uuid4().hex}", partitions=2
    )
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="vt-api-tests")
    t = settings.topics
    configs = {t.twin_state: {"cleanup.policy": "compact"}, t.alerts: {}, t.effects: {}}
    admin.create_topics(
        {
            n: {"num_partitions": 2, "replication_factor": 1, "configs": c}
            for n, c in configs.items()
        },
        wait_for_metadata=True,
    )
    try:
        yield settings
    finally:
        admin.delete_topics(list(configs))
        admin.close()


def test_api_serves_the_twin_state_topic(topics: KafkaSettings, ward: Ward, tmp_path: Path) -> None:
    states = ward.store.load_states()
    producer = KafkaProducer(bootstrap_servers=topics.bootstrap, acks="all")
    t = topics.topics
    for pid, state in states.items():
        # A stale record first: compaction (or the view) must keep only the newest per key.
        producer.send(t.twin_state, key=pid.encode(), value=Entry(None).to_bytes())
        producer.send(t.twin_state, key=pid.encode(), value=Entry(state, {}, 1).to_bytes())
    high = next(pid for pid, st in states.items() if st.news2_band == "high")
    book, _ = evaluate(None, states[high], states[high].watermark_ms)
    _, notes = evaluate(book, states[high], states[high].watermark_ms + 15 * 60_000)
    assert notes
    for note in notes:
        producer.send(
            t.alerts,
            key=high.encode(),
            value=json.dumps({"v": 1, **note.model_dump(mode="json")}).encode(),
        )
    forecast = {
        "v": 1,
        "kind": "forecast",
        "patient_id": high,
        "effect_id": "fx_1",
        "made_at_ms": states[high].watermark_ms,
        "model": "tft",
        "risk": {"12": 0.42},
        "explanation": [{"feature": "spo2", "weight": 0.3}],
    }
    producer.send(t.effects, key=high.encode(), value=json.dumps(forecast).encode())
    producer.flush()

    hub = EventHub()
    alerts = AlertStore(tmp_path / "api-alerts.db")
    view = KafkaView(topics, alerts, hub=hub).start()
    try:
        assert view.wait_ready(30), view.error
        embedded_order = [r["patient_id"] for r in ward.store.patients_by_risk()]
        with TestClient(create_app(view, auth=auth(), alerts=alerts, hub=hub)) as client:
            page = client.get("/api/v1/patients", headers=bearer(READER)).json()
            assert page["total"] == len(states)
            # The same twins, most at risk first, as the embedded view lists them.
            kafka_order = [p["patient_id"] for p in page["items"]]
            assert kafka_order == embedded_order
            twin = client.get(f"/api/v1/patients/{high}", headers=bearer(READER)).json()
            assert twin["news2_total"] == states[high].news2_total
            assert twin["forecast"]["risk"] == [
                {"horizon_h": 12.0, "probability": 0.42, "lower": None, "upper": None}
            ]
            hist = client.get(
                f"/api/v1/patients/{high}/history",
                headers=bearer(READER),
                params={"signal": "heart_rate"},
            ).json()
            assert hist["binned"]
            assert hist["points"]
            listed = client.get(
                "/api/v1/alerts", headers=bearer(READER), params={"patient_id": high}
            ).json()
            assert {a["rule"] for a in listed["items"]} == {n.rule for n in notes}
            alert_id = listed["items"][0]["alert_id"]
            r = client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=bearer(CLINICIAN))
            assert r.status_code == 202
            assert r.json()["alert"]["status"] == "acknowledged"

            # A tombstone removes the patient from the view.
            producer.send(t.twin_state, key=high.encode(), value=None)
            producer.flush()
            deadline = time.monotonic() + 15
            while client.get(f"/api/v1/patients/{high}", headers=bearer(READER)).status_code != 404:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        view.close()
        alerts.close()
        producer.close()
