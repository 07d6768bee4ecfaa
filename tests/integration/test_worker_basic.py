"""Smoke test of ``vitaltwin worker`` on a real broker: a few hundred records end to end.

Wearable batches, a FHIR lab Observation on the EHR topic, a malformed record, an unknown code
and a record whose key names another patient go through the edge; one worker subprocess folds
them. Checked: the final twins equal an offline replay, the accounting closes, dead letters
carry their reason and the original bytes, nothing on the output topics names a patient or a
device, and a key/content mismatch is dead-lettered as ``patient_mismatch``.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from _kafka_helpers import (
    WorkerProcess,
    anchor_time,
    check_against_replay,
    delete_test_topics,
    make_edge,
    produce,
    read_topic,
    unique_settings,
    vitals_stream,
    wait_caught_up,
    workers_cleaned_up,
)
from kafka import KafkaAdminClient

from streams.ingress import SourceKind
from streams.kafka_topics import ensure_topics
from twin import apply_many
from twin.events import LabResult, to_ms
from twin.signals import Signal

pytestmark = pytest.mark.integration

NAME = "Jane Doe"


def lab_observation(mrn: str, at: str) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": "lac-1",
        "status": "final",
        "category": [{"coding": [{"code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2524-7"}]},
        "subject": {"reference": f"Patient/{mrn}", "display": NAME},
        "effectiveDateTime": at,
        "valueQuantity": {
            "value": 3.1,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }


def test_worker_end_to_end_smoke(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> None:
    settings = unique_settings(kafka_bootstrap, "basic")
    topics = settings.topics
    t0 = anchor_time()
    stream = vitals_stream(20, 10, t0, seed=3, late_rate=0, unknown_rate=0, malformed=0)
    lab_mrn, unknown_mrn, key_mrn, content_mrn = stream.mrns[:4]
    at = t0 + timedelta(minutes=5)
    malformed = b'{"samples": [{"code": "8867-4", "value": 71'
    unknown = {
        "patient_id": unknown_mrn,
        "device_id": stream.serials[1],
        "observed_at": at.isoformat(),
        "code": "0000-0",
        "value": 1,
        "unit": "/min",
    }
    items = stream.items + 4  # the lab, the malformed record, the unknown code, the mismatch
    ensure_topics(settings)
    edge, store = make_edge(settings, tmp_path / "pseudonyms.db")
    worker = WorkerProcess(settings, tmp_path / "worker-data", "worker")
    try:
        with workers_cleaned_up(worker):
            produce(edge, stream.records)
            # The lab's time is the stream's start, so it commutes with the vitals (checked
            # below): the worker may interleave the two topics in any order.
            edge.send(SourceKind.FHIR, lab_observation(lab_mrn, t0.isoformat()), at)
            edge.send(SourceKind.WEARABLE, malformed, at)
            edge.send(SourceKind.WEARABLE, unknown, at)
            # Keyed by one patient's token, naming another: only a buggy or hostile producer
            # sends this, so bypass the edge's keying.
            mismatch_value = json.dumps(
                edge.pseudonymiser.sample({**unknown, "patient_id": content_mrn, "code": "8867-4"})
            ).encode()
            key_token = store.token_for("patient", key_mrn)
            edge.producer.send(
                topics.wearable,
                key=key_token.encode(),
                value=mismatch_value,
                timestamp_ms=to_ms(at),
            )
            edge.flush()

            worker.start()
            try:
                wait_caught_up(kafka_admin, kafka_bootstrap, settings, 90, worker.supervised)
                expected, entries, dls = check_against_replay(kafka_bootstrap, topics, items)
                # The twin-state topic is the table's changelog (what entries came from above):
                # the worker keeps no second copy of every state in a changelog of its own.
                own = [t for t in kafka_admin.list_topics() if t.startswith(settings.app_id)]
                assert not [t for t in own if "changelog" in t], own
            except BaseException:
                print(worker.log_tail())
                raise

        # The FHIR lab reached its patient's twin, and commutes with that patient's vitals.
        lab_token = store.token_for("patient", lab_mrn)
        lab_state = entries[lab_token].state
        assert lab_state is not None
        assert lab_state.latest_value(Signal.LACTATE) == pytest.approx(3.1)
        evs = expected.events[lab_token]
        lab = next(e for e in evs if isinstance(e, LabResult))
        vitals = [e for e in evs if e is not lab]
        for i in range(0, len(vitals) + 1, 3):
            state, _ = apply_many(None, [*vitals[:i], lab, *vitals[i:]])
            assert state == lab_state, f"lab at position {i} gives another state"

        # Dead letters: one per bad item, each with its reason and the bytes it came from.
        by_reason = {d["reason"]: d for d in dls}
        assert sorted(by_reason) == ["malformed", "patient_mismatch", "unknown_code"]
        assert len({d["dead_letter_id"] for d in dls}) == 3
        assert base64.b64decode(by_reason["malformed"]["payload_b64"]) == malformed
        mismatch = by_reason["patient_mismatch"]
        assert base64.b64decode(mismatch["payload_b64"]) == mismatch_value
        assert mismatch["position"].startswith(f"{topics.wearable}:")
        assert mismatch["received_at_ms"] == to_ms(at)
        unknown_payload = json.loads(base64.b64decode(by_reason["unknown_code"]["payload_b64"]))
        assert unknown_payload["code"] == "0000-0"
        assert unknown_payload["patient_id"] == store.token_for("patient", unknown_mrn)
        # Neither the key's nor the content's patient took the mismatched sample in.
        content_token = store.token_for("patient", content_mrn)
        assert entries[key_token].items == stream.valid_by_mrn[key_mrn]
        assert entries[content_token].items == stream.valid_by_mrn[content_mrn]

        # Privacy: no MRN, device serial or name in any byte the worker wrote.
        secrets = [s.encode() for s in [*stream.mrns, *stream.serials, NAME]]
        for topic in (topics.twin_state, topics.effects, topics.dead_letter):
            records = read_topic(kafka_bootstrap, topic)
            assert records, f"nothing on {topic}"
            blob = b"\n".join((r.key or b"") + b"\t" + r.value for r in records)
            leaked = [s.decode() for s in secrets if s in blob]
            assert not leaked, f"{topic} carries identifiers: {leaked[:3]}"
    finally:
        edge.close()
        store.close()
        delete_test_topics(kafka_admin, settings.topic_prefix)
