"""Ingestion round trips: POSTed data takes the shared ingress, reaches the twin, or is
dead-lettered with a reason and an id the store holds."""

from __future__ import annotations

import json
from datetime import timedelta

from api_support import INGEST, NOW, READER, bearer
from fastapi.testclient import TestClient
from ward_fixtures import Ward

MRN = "MRN-7777-NEW"  # a patient the ward has never seen


def sample(minute: int, code: str = "8867-4", value: float = 131.0, unit: str = "/min") -> dict:
    at = NOW - timedelta(minutes=minute)
    return {
        "patient_id": MRN,
        "device_id": "SN-API-1",
        "observed_at": at.isoformat(),
        "code": code,
        "value": value,
        "unit": unit,
        "source": "gateway",
    }


def test_wearable_sample_round_trip(client: TestClient, ward: Ward) -> None:
    before = ward.store.accounting()
    r = client.post(
        "/api/v1/ingest/wearable",
        headers=bearer(INGEST),
        json={"samples": [sample(2), sample(1, value=133.0)]},
    )
    assert r.status_code == 202, r.text
    assert r.json() == {"received": 2, "accepted": 2, "dead_lettered": [], "applied": True}
    assert MRN not in r.text  # the receipt names no identifier
    token = ward.pseudonyms.token_for("patient", MRN)
    twin = client.get(f"/api/v1/patients/{token}", headers=bearer(READER)).json()
    assert twin["vitals"]["heart_rate"]["value"] == 133.0
    hist = client.get(
        f"/api/v1/patients/{token}/history", headers=bearer(READER), params={"signal": "heart_rate"}
    ).json()
    assert [p["value"] for p in hist["points"]] == [131.0, 133.0]
    after = ward.store.accounting()
    assert after.received == before.received + 2
    assert after.processed == before.processed + 2
    assert after.closes
    # Pseudonymised at ingress: the MRN is nowhere in the monitoring store.
    assert ward.store.state(MRN) is None


def test_malformed_body_is_dead_lettered_with_its_id(client: TestClient, ward: Ward) -> None:
    r = client.post(
        "/api/v1/ingest/wearable",
        headers=bearer(INGEST),
        content=b'{"patient_id": "MRN-1", "value": ',
    )
    assert r.status_code == 422
    body = r.json()["error"]
    assert body["code"] == "dead_lettered"
    [dl] = body["details"]
    assert dl["reason"] == "malformed"
    assert dl["dead_letter_id"].startswith("dl_")
    stored = {d.dead_letter_id: d for d in ward.store.dead_letters(limit=1000)}
    assert stored[dl["dead_letter_id"]].reason == "malformed"
    assert stored[dl["dead_letter_id"]].source == "api:wearable"
    # The same bad body again: the same dead letter, stored once.
    again = client.post(
        "/api/v1/ingest/wearable",
        headers=bearer(INGEST),
        content=b'{"patient_id": "MRN-1", "value": ',
    )
    assert again.json()["error"]["details"][0]["dead_letter_id"] == dl["dead_letter_id"]
    ids = [d.dead_letter_id for d in ward.store.dead_letters(limit=1000)]
    assert ids.count(dl["dead_letter_id"]) == 1
    assert ward.store.accounting().closes


def test_partly_valid_batch_is_accepted_with_its_rejects(client: TestClient, ward: Ward) -> None:
    bad_unit = sample(3, code="8310-5", value=99.0, unit="degF-ish")
    r = client.post(
        "/api/v1/ingest/wearable",
        headers=bearer(INGEST),
        json=[sample(4), bad_unit, {"not": "a sample"}],
    )
    assert r.status_code == 202
    got = r.json()
    assert (got["received"], got["accepted"]) == (3, 1)
    reasons = sorted(d["reason"] for d in got["dead_lettered"])
    assert reasons == ["missing_element", "unknown_unit"]
    stored = {d.dead_letter_id for d in ward.store.dead_letters(limit=1000)}
    assert {d["dead_letter_id"] for d in got["dead_lettered"]} <= stored
    # A stored dead letter keeps the pseudonymised item, never the MRN.
    for d in ward.store.dead_letters(limit=1000):
        if d.dead_letter_id in {x["dead_letter_id"] for x in got["dead_lettered"]}:
            assert MRN.encode() not in d.payload


def test_fhir_observation_and_bundle_round_trip(client: TestClient, ward: Ward) -> None:
    obs = {
        "resourceType": "Observation",
        "id": "lac-api-1",
        "status": "final",
        "category": [{"coding": [{"code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2524-7"}]},
        "subject": {"reference": "Patient/MRN-FHIR-9", "display": "Jane Doe"},
        "effectiveDateTime": (NOW - timedelta(minutes=30)).isoformat(),
        "valueQuantity": {
            "value": 4.1,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }
    r = client.post(
        "/api/v1/ingest/fhir",
        headers={**bearer(INGEST), "Content-Type": "application/fhir+json"},
        content=json.dumps(obs),
    )
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1
    token = ward.pseudonyms.token_for("patient", "MRN-FHIR-9")
    twin = client.get(f"/api/v1/patients/{token}", headers=bearer(READER)).json()
    assert twin["labs"]["lactate"]["value"] == 4.1
    # A Bundle with one invalid entry is one dead item: nothing of it reaches a twin.
    broken = {
        **obs,
        "id": "lac-api-2",
        "valueQuantity": {"value": 4.0, "unit": "furlongs", "code": "furlongs"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {**obs, "id": "lac-api-3"}}, {"resource": broken}],
    }
    r = client.post("/api/v1/ingest/fhir", headers=bearer(INGEST), json=bundle)
    assert r.status_code == 422
    [dl] = r.json()["error"]["details"]
    assert dl["reason"] in ("unknown_unit", "schema_violation")
    assert "Bundle.entry[1]" in dl["detail"]
    assert ward.store.accounting().closes


def test_ingestion_needs_the_ingest_role_and_a_body_within_limits(client: TestClient) -> None:
    assert (
        client.post("/api/v1/ingest/wearable", headers=bearer(READER), json=sample(1)).status_code
        == 403
    )
    huge = b'{"samples": [' + b",".join([json.dumps(sample(1)).encode()] * 7000) + b"]}"
    assert len(huge) > 1 << 20
    r = client.post("/api/v1/ingest/wearable", headers=bearer(INGEST), content=huge)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"

    def chunks():  # no Content-Length: the limit counts the bytes actually received
        for _ in range(40):
            yield b" " * 32_768

    r = client.post("/api/v1/ingest/wearable", headers=bearer(INGEST), content=chunks())
    assert r.status_code == 413
