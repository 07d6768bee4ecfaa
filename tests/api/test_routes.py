"""Reads, alert commands, errors, limits, live updates and metrics of the API."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from api_support import CLINICIAN, INGEST, MINUTES, NOW, READER, bearer, build_app
from fastapi.testclient import TestClient
from ward_fixtures import PATIENTS, T0, Ward, WardSource, stub_forecasts

from streams.api import EmbeddedView, EventHub, RuntimeInbox, start_in_thread
from streams.api.ingest import KafkaIngestor
from streams.api.poller import StorePoller
from streams.api.views import BAND_RANK, forecast_from_record
from streams.ingress import Ingress, SourceKind
from streams.kafka_settings import KafkaSettings
from streams.pseudonym import Pseudonymiser


def get(client: TestClient, path: str, token: str = READER, **params: object) -> dict:
    r = client.get("/api/v1" + path, headers=bearer(token), params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_patients_come_most_at_risk_first_and_paginate(client: TestClient) -> None:
    full = get(client, "/patients", limit=500)
    assert full["total"] == len(PATIENTS) == len(full["items"])
    keys = [(BAND_RANK[p["news2_band"]], p["news2_total"]) for p in full["items"]]
    assert keys == sorted(keys, reverse=True)
    assert full["items"][0]["news2_band"] == "high"
    pages = [get(client, "/patients", limit=4, offset=o) for o in (0, 4)]
    assert [p["total"] for p in pages] == [6, 6]
    assert [len(p["items"]) for p in pages] == [4, 2]
    assert [i for p in pages for i in p["items"]] == full["items"]
    assert get(client, "/patients", limit=5, offset=50)["items"] == []
    bad = client.get("/api/v1/patients", headers=bearer(READER), params={"limit": 0})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_request"


def test_forecast_risk_breaks_ties_and_renders(ward: Ward) -> None:
    view = EmbeddedView(ward.store, ward.alerts, forecasts=stub_forecasts(ward.store))
    with TestClient(build_app(ward)) as plain:
        assert all(p["forecast_risk"] is None for p in get(plain, "/patients")["items"])
    app = build_app(ward)
    app.state.view = view
    top = view.patients_by_risk(10, 0).items[0]
    assert top.forecast_risk is not None
    assert top.risk_trajectory
    twin = view.twin(top.patient_id)
    assert twin is not None
    assert twin.forecast is not None
    assert {q.signal for q in twin.forecast.quantiles} >= {"heart_rate", "spo2"}
    point = twin.forecast.quantiles[0].points[0]
    assert set(point.quantiles) == {"0.1", "0.25", "0.5", "0.75", "0.9"}
    assert twin.forecast.explanation


def test_forecast_records_of_other_shapes() -> None:
    fc = forecast_from_record(
        {
            "made_at_ms": 1000,
            "model": "tft",
            "risk": [
                {"horizon_h": 12, "probability": 0.4, "lower": 0.3, "upper": 0.5},
                {"horizon_h": 4, "probability": 2.0},
            ],
            "quantiles": [
                {
                    "signal": "spo2",
                    "points": [
                        {"t_ms": 1000 + 900_000, "quantiles": {"0.02": 88, "0.5": 92, "0.98": 96}}
                    ],
                }
            ],
            "explanation": [{"feature": "spo2", "weight": "0.4"}, {"weight": 1}],
        }
    )
    assert fc is not None
    assert [(r.horizon_h, r.probability) for r in fc.risk] == [(12, 0.4)]  # 2.0 is no probability
    assert fc.quantiles[0].points[0].horizon_min == 15
    assert [d.feature for d in fc.explanation] == ["spo2"]
    assert forecast_from_record({"risk": {}}) is None
    assert forecast_from_record(None) is None


def test_twin_and_history(client: TestClient, ward: Ward) -> None:
    pid = ward.token("MRN-1004")
    twin = get(client, f"/patients/{pid}")
    assert twin["news2_band"] == "high"
    assert twin["forecast"] is None
    assert twin["labs"]["lactate"]["value"] == 3.8
    assert [m["medication"] for m in twin["medications"]] == ["antibiotic"]
    assert {a["status"] for a in twin["alerts"]} <= {"firing", "acknowledged"}
    start = int((T0 + timedelta(minutes=10)).timestamp() * 1000)
    hist = get(
        client,
        f"/patients/{pid}/history",
        signal="heart_rate",
        start_ms=start,
        end_ms=start + 10 * 60_000,
        limit=4,
    )
    assert hist["total"] == 10
    assert len(hist["points"]) == 4
    assert not hist["binned"]
    assert hist["points"][0]["t_ms"] == start
    assert get(client, f"/patients/{pid}/history", signal="lactate")["points"][0]["value"] == 3.8
    missing = client.get("/api/v1/patients/pt-nobody", headers=bearer(READER))
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "no such patient"}}
    bad = client.get(
        f"/api/v1/patients/{pid}/history",
        headers=bearer(READER),
        params={"signal": "heart_rate", "start_ms": 10, "end_ms": 5},
    )
    assert bad.status_code == 422
    assert (
        client.get(
            f"/api/v1/patients/{pid}/history", headers=bearer(READER), params={"signal": "mood"}
        ).status_code
        == 422
    )


def test_acknowledge_annotate_silence(client: TestClient, ward: Ward) -> None:
    firing = get(client, "/alerts", status="firing", limit=100)
    assert firing["total"] >= 3
    alert = firing["items"][0]
    path = f"/api/v1/alerts/{alert['alert_id']}"
    assert client.post(path + "/acknowledge", headers=bearer(READER)).status_code == 403
    r = client.post(path + "/acknowledge", headers=bearer(CLINICIAN), json={"note": "seen"})
    assert r.status_code == 202
    assert r.json()["alert"]["status"] == "acknowledged"
    assert r.json()["alert"]["acknowledged_by"] == "nurse-ana"  # from the token, not the body
    again = client.post(path + "/acknowledge", headers=bearer(CLINICIAN))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert (
        client.post(
            path + "/annotate", headers=bearer(CLINICIAN), json={"label": "true_alarm"}
        ).status_code
        == 202
    )
    assert client.post(path + "/annotate", headers=bearer(CLINICIAN), json={}).status_code == 422
    assert client.post(path + "/unacknowledge", headers=bearer(CLINICIAN)).status_code == 202
    audit = ward.alerts.audit_log(alert["alert_id"])
    assert sorted((a["action"], a["by"], a["outcome"]) for a in audit) == [
        ("acknowledge", "nurse-ana", "requested"),
        ("annotate", "nurse-ana", "requested"),
        ("unacknowledge", "nurse-ana", "requested"),
    ]  # one clock instant (the test's): the log orders them by id, not by submission
    # The runtime's alert stage applies the queued commands to the book on its next batch.
    ward.runtime(WardSource(1, first_minute=MINUTES, name="after")).run()
    assert {a["outcome"] for a in ward.alerts.audit_log(alert["alert_id"])} == {"applied"}
    pid = alert["patient_id"]
    r = client.post(
        f"/api/v1/patients/{pid}/silences",
        headers=bearer(CLINICIAN),
        json={"minutes": 30, "reason": "family visit", "rule": "qsofa"},
    )
    assert r.status_code == 202
    assert r.json()["action"] == "silence"
    assert (
        client.post(
            "/api/v1/patients/pt-nobody/silences",
            headers=bearer(CLINICIAN),
            json={"minutes": 30, "reason": "x"},
        ).status_code
        == 404
    )
    assert (
        client.post("/api/v1/alerts/al_missing/acknowledge", headers=bearer(CLINICIAN)).status_code
        == 404
    )


def test_alert_pagination(client: TestClient) -> None:
    everything = get(client, "/alerts", limit=500)
    page = get(client, "/alerts", limit=2, offset=1)
    assert page["total"] == everything["total"]
    assert page["items"] == everything["items"][1:3]


def test_error_bodies_and_headers(client: TestClient) -> None:
    r = client.get("/api/v1/nowhere", headers=bearer(READER))
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = client.delete("/api/v1/patients", headers=bearer(READER))
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"
    r = client.get("/api/v1/patients", headers=bearer(READER))
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    r = client.post(
        "/api/v1/alerts/x/acknowledge",
        headers=bearer(CLINICIAN),
        content=b"{",
    )
    assert r.status_code in (404, 422)
    assert "error" in r.json()


def test_logs_name_no_token_and_no_patient(
    client: TestClient, ward: Ward, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pid = ward.token("MRN-1003")
    client.get(f"/api/v1/patients/{pid}", headers=bearer(READER))
    client.get("/api/v1/patients", headers=bearer("Bearer wrong-token-123456789"))
    client.post(
        "/api/v1/ingest/wearable",
        headers=bearer(INGEST),
        json={
            "patient_id": "MRN-SECRET-1",
            "observed_at": NOW.isoformat(),
            "code": "8867-4",
            "value": 80,
            "unit": "/min",
        },
    )
    # The server's records (the test client's own request log is not the server's business).
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert "/api/v1/patients/{patient_id}" in text  # the route template is logged
    for secret in (pid, READER, "wrong-token-123456789", "MRN-SECRET-1", INGEST):
        assert secret not in text


def test_metrics(client: TestClient) -> None:
    client.post(
        "/api/v1/ingest/wearable",
        headers=bearer(INGEST),
        json={
            "patient_id": "MRN-M",
            "observed_at": NOW.isoformat(),
            "code": "0000-0",
            "value": 1,
            "unit": "/min",
        },
    )
    r = client.get("/metrics", headers=bearer(READER))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in (
        "vitaltwin_events_total",
        "vitaltwin_dead_letters_total",
        "vitaltwin_api_requests_total",
        "vitaltwin_event_to_effect_seconds_bucket",
        "vitaltwin_batch_seconds_bucket",
    ):
        assert name in text, name
    assert 'vitaltwin_dead_letters_total{reason="unknown_code"}' in text
    assert "pt-" not in text
    assert "MRN" not in text


def data_of(got: list[tuple[str, dict]]) -> dict:
    return got[-1][1]


def test_event_stream_pushes_changed_tiles_and_alerts(ward: Ward) -> None:
    hub = EventHub(interval_s=0.05)
    server = start_in_thread(build_app(ward, hub=hub))
    got: list[tuple[str, dict]] = []
    try:
        with httpx.stream(
            "GET", server.url + "/api/v1/stream", headers=bearer(READER), timeout=10
        ) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.iter_lines()
            event = None
            runner = threading.Thread(
                target=ward.runtime(
                    WardSource(2, first_minute=MINUTES, name="sse"), hooks=[hub.publish]
                ).run
            )
            started = False
            for line in lines:
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    got.append((event or "", json.loads(line[5:])))
                    if event == "hello" and not started:
                        started = True
                        runner.start()
                    if event == "patients" and len(got) == 2:
                        # A clinician acknowledges: the stream says whose alerts changed.
                        firing = ward.alerts.list_alerts(status="firing", limit=1)[0]
                        ack = httpx.post(
                            f"{server.url}/api/v1/alerts/{firing['alert_id']}/acknowledge",
                            headers=bearer(CLINICIAN),
                        )
                        assert ack.status_code == 202
                    if event == "alerts":
                        assert data_of(got) == {"patient_ids": [firing["patient_id"]]}
                        break
            runner.join(10)
    finally:
        server.stop()
    kinds = [e for e, _ in got]
    assert kinds[0] == "hello"
    tiles = next(d for e, d in got if e == "patients")["items"]
    assert {t["patient_id"] for t in tiles} <= {ward.token(m) for m in PATIENTS}
    assert all("news2_total" in t and "vitals" in t for t in tiles)
    assert not server.thread.is_alive()  # stop() ended the stream instead of waiting on it


def test_store_poller_publishes_what_another_writer_changed(ward: Ward) -> None:
    hub = EventHub()
    poller = StorePoller(ward.store, ward.alerts, hub)
    assert poller.poll()[0] == {ward.token(m) for m in PATIENTS}  # baseline
    ward.runtime(WardSource(1, first_minute=MINUTES, name="poll")).run()
    changed, _ = poller.poll()
    assert changed == {ward.token(m) for m in PATIENTS}
    assert poller.poll() == (set(), set())


def test_runtime_inbox_validates_now_and_hands_records_to_the_runtime(ward: Ward) -> None:
    inbox = RuntimeInbox(Ingress(Pseudonymiser(ward.pseudonyms)), lambda: NOW)
    app = build_app(ward, ingestor=inbox)
    with TestClient(app) as client:
        ok = {
            "patient_id": "MRN-INBOX",
            "observed_at": NOW.isoformat(),
            "code": "8867-4",
            "value": 90,
            "unit": "/min",
        }
        r = client.post("/api/v1/ingest/wearable", headers=bearer(INGEST), json=ok)
        assert r.status_code == 202
        assert r.json()["applied"] is False
        bad = client.post("/api/v1/ingest/wearable", headers=bearer(INGEST), content=b"nope")
        assert bad.status_code == 422
        dl_id = bad.json()["error"]["details"][0]["dead_letter_id"]
    records = inbox.drain()
    assert len(records) == 2
    assert inbox.drain() == []
    # What the runtime does with them: the same events and the same dead-letter id.
    outcome = ward.pipeline.handle(records, {})
    assert [p.patient_id for p in outcome.parts] == [ward.token("MRN-INBOX")]
    assert [d.dead_letter_id for d in outcome.dead] == [dl_id]


class FakeProducer:
    def __init__(self) -> None:
        self.settings = KafkaSettings(topic_prefix="t")
        self.sent: list[tuple[SourceKind, object]] = []
        self.dead: list[bytes] = []
        self.producer = self

    def send(self, *args: object, **kwargs: object) -> None:
        if args and isinstance(args[0], SourceKind):
            self.sent.append((args[0], args[1]))
        else:
            self.dead.append(kwargs["value"])  # type: ignore[arg-type]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_kafka_ingestor_sends_accepted_items_and_dead_letters_the_rest(tmp_path: Path) -> None:
    from streams.pseudonym import PseudonymStore

    producer = FakeProducer()
    pseudonymiser = Pseudonymiser(PseudonymStore(tmp_path / "p.db"))
    ingestor = KafkaIngestor(producer, Ingress(pseudonymiser), lambda: NOW)
    good = {
        "patient_id": "MRN-K",
        "observed_at": NOW.isoformat(),
        "code": "8867-4",
        "value": 90,
        "unit": "/min",
    }
    receipt = ingestor.ingest(SourceKind.WEARABLE, json.dumps([good, {"x": 1}, good]).encode())
    assert (receipt.received, receipt.accepted, receipt.applied) == (3, 2, False)
    assert [item for _, item in producer.sent] == [good, good]
    [dead] = producer.dead
    assert json.loads(dead)["dead_letter_id"] == receipt.dead_lettered[0].dead_letter_id


def test_body_limit_is_configurable(ward: Ward) -> None:
    with TestClient(build_app(ward, max_body_bytes=100)) as client:
        r = client.post(
            "/api/v1/alerts/x/annotate", headers=bearer(CLINICIAN), json={"note": "x" * 200}
        )
        assert r.status_code == 413
        assert r.json() == {
            "error": {"code": "payload_too_large", "message": "request body exceeds 100 bytes"}
        }
