"""Worker reliability on a real broker: crashes, hand-overs and a broker restart lose nothing.

Each test sends a deterministic wearable stream (duplicates, late and malformed records,
unknown codes) through ``EdgeProducer`` to uniquely named topics, runs ``vitaltwin worker``
subprocesses on them, disturbs them mid-stream, and then checks, once the worker group has
committed every input offset:

- every twin on the compacted ``<prefix>.twin-state`` topic equals an offline replay of the
  input topics through the same decoding and ``twin.apply_many`` (``TwinState`` equality);
- the accounting closes: the items folded into the twins plus the unique dead-letter ids equal
  the items produced (samples, plus one per undecodable record);
- the tokens map back, through the edge's pseudonym store, to the simulated MRNs, each twin
  holding exactly the samples its patient sent.

"Mid-stream" is established by polling the twin-state topic, never by sleeping.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from _kafka_helpers import (
    PrivateBroker,
    ProgressWatcher,
    VitalsStream,
    WorkerProcess,
    anchor_time,
    check_against_replay,
    delete_test_topics,
    free_port_pair,
    make_edge,
    produce,
    read_topic,
    unique_settings,
    vitals_stream,
    wait_caught_up,
    wait_until,
    workers_cleaned_up,
)
from kafka import KafkaAdminClient

from streams.kafka_batch import Entry
from streams.kafka_settings import KafkaSettings
from streams.kafka_topics import ensure_topics
from streams.pseudonym import PseudonymStore

pytestmark = pytest.mark.integration


def check_pseudonyms(
    entries: dict[str, Entry], store: PseudonymStore, stream: VitalsStream
) -> None:
    """Every twin is keyed by a token that maps back to one simulated MRN, and holds exactly the
    valid samples (duplicates included: they are items, the twin ignores them) of that MRN."""
    by_mrn = {}
    for token, entry in entries.items():
        mrn = store.identifier_for("patient", token)
        assert mrn is not None, "a twin is keyed by something the edge never minted"
        assert entry.state is not None
        assert entry.state.patient_id == token
        by_mrn[mrn] = entry.items
    assert by_mrn == dict(stream.valid_by_mrn)


@pytest.fixture
def cleanup_topics(kafka_admin: KafkaAdminClient) -> Iterator[list[KafkaSettings]]:
    made: list[KafkaSettings] = []
    yield made
    for settings in made:
        delete_test_topics(kafka_admin, settings.topic_prefix)


def test_kill9_mid_stream_then_restart_loses_nothing(
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
    tmp_path: Path,
    cleanup_topics: list[KafkaSettings],
) -> None:
    """100,000 samples; SIGKILL the only worker after 20% of them, restart it, finish."""
    settings = unique_settings(kafka_bootstrap, "kill9")
    cleanup_topics.append(settings)
    ensure_topics(settings)
    stream = vitals_stream(200, 166, anchor_time(), seed=11)
    assert stream.items >= 100_000
    assert min(stream.counts[k] for k in ("duplicate_records", "late_records", "malformed")) > 0
    first, rest = stream.split(0.6)

    edge, store = make_edge(settings, tmp_path / "pseudonyms.db")
    worker = WorkerProcess(settings, tmp_path / "worker-data", "worker")
    watcher = ProgressWatcher(kafka_bootstrap, settings.topics)
    with workers_cleaned_up(worker):
        try:
            produce(edge, first)
            worker.start()
            at_kill = watcher.wait_for(stream.items // 5, 120, "the worker to fold 20% in")
            worker.kill9()
            assert at_kill < sum(s.items for s in first), "not mid-stream: all sent was done"

            worker.start()  # the same app id: it recovers its table from the changelog
            produce(edge, rest)
            # supervised: should faust's stream stall after the restart (seen about once in
            # eight runs), the watchdog exits and the worker is restarted, as in production.
            wait_caught_up(kafka_admin, kafka_bootstrap, settings, 180, worker.supervised)
            _, entries, _ = check_against_replay(kafka_bootstrap, settings.topics, stream.items)
            check_pseudonyms(entries, store, stream)
            # The late records really were late: the twins counted them instead of binning.
            assert sum(e.state.late_count for e in entries.values() if e.state) > 0
            # The worker ran the shipped forecaster on every twin that became due, and each
            # twin's alert book holds its latest forecast (written with the state).
            forecasts = [
                record
                for msg in read_topic(kafka_bootstrap, settings.topics.effects)
                if (record := json.loads(msg.value)).get("kind") == "forecast"
            ]
            assert {r["patient_id"] for r in forecasts} == set(entries)
            assert all(e.alerts is not None and e.alerts.forecast for e in entries.values())
        except BaseException:
            print(worker.log_tail())
            raise
        finally:
            watcher.close()
            edge.close()
            store.close()


def test_sigterm_one_of_two_workers_the_other_takes_over(
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
    tmp_path: Path,
    cleanup_topics: list[KafkaSettings],
) -> None:
    """Two workers share 8 partitions; one stops gracefully mid-stream; the other finishes."""
    settings = unique_settings(kafka_bootstrap, "handover")
    cleanup_topics.append(settings)
    ensure_topics(settings)
    stream = vitals_stream(200, 33, anchor_time(), seed=12)
    assert stream.items >= 20_000
    first, rest = stream.split(0.5)

    edge, store = make_edge(settings, tmp_path / "pseudonyms.db")
    one = WorkerProcess(settings, tmp_path / "one-data", "one")
    two = WorkerProcess(settings, tmp_path / "two-data", "two")
    watcher = ProgressWatcher(kafka_bootstrap, settings.topics)
    with workers_cleaned_up(one, two):
        try:
            one.start()
            two.start()
            wait_until(
                lambda: _members(kafka_admin, settings.app_id) == [4, 4],
                90,
                "both workers to hold 4 partitions each",
            )
            produce(edge, first)
            watcher.wait_for(stream.items // 5, 90, "the workers to fold 20% in")
            assert one.terminate() == 0, one.log_tail()
            produce(edge, rest)
            wait_until(
                lambda: _members(kafka_admin, settings.app_id) == [8],
                60,
                "the remaining worker to take all 8 partitions",
            )
            # two.supervised: faust can stall after a rebalance (a known upstream failure); the
            # worker's watchdog then exits for a restart, as its supervisor would do here.
            wait_caught_up(kafka_admin, kafka_bootstrap, settings, 180, two.supervised)
            _, entries, _ = check_against_replay(kafka_bootstrap, settings.topics, stream.items)
            check_pseudonyms(entries, store, stream)
        except BaseException:
            print(one.log_tail(), two.log_tail(), sep="\n----\n")
            raise
        finally:
            watcher.close()
            edge.close()
            store.close()


def _members(admin: KafkaAdminClient, group: str) -> list[int]:
    """Input-topic partitions held by each member of the group (sorted), [] if none."""
    try:
        described = admin.describe_groups([group])[group]
    except Exception:  # group not there yet, coordinator loading ...
        return []
    if described.get("group_state") != "Stable":
        return []
    held = []
    for member in described.get("members", []):
        assignment = member.get("member_assignment") or {}
        topics = assignment.get("assigned_partitions") or assignment.get("partitions") or []
        held.append(
            sum(
                len(t.get("partitions", []))
                for t in topics
                if t.get("topic", "").endswith(".wearable")
            )
        )
    return sorted(held)


def test_broker_restart_mid_stream(tmp_path: Path) -> None:
    """A private broker is killed (SIGKILL) and restarted with its data while a worker runs.

    The worker is expected to reconnect by itself (it does: aiokafka retries, faust carries
    on). Should it ever exit instead, the test restarts it and says so with a warning, as a
    supervisor would.
    """
    broker = PrivateBroker(tmp_path / "broker", free_port_pair())
    broker.start()
    settings = unique_settings(broker.bootstrap, "brokerdown")
    ensure_topics(settings)
    stream = vitals_stream(200, 33, anchor_time(), seed=13)
    first, rest = stream.split(0.5)

    edge, store = make_edge(settings, tmp_path / "pseudonyms.db")
    worker = WorkerProcess(settings, tmp_path / "worker-data", "worker")
    watcher = ProgressWatcher(broker.bootstrap, settings.topics)
    try:
        with workers_cleaned_up(worker):
            try:
                produce(edge, first)
                worker.start()
                watcher.wait_for(stream.items // 5, 90, "the worker to fold 20% in")
                broker.kill9()
                broker.start()  # the same data dir: a crash and restart, not a new cluster
                produce(edge, rest)
                if not worker.alive:
                    warnings.warn(
                        "worker exited while the broker was down; restarted", stacklevel=1
                    )
                    worker.start()
                # A fresh admin client: kafka-python's does not find the group coordinator
                # again after the broker it knew went away (NodeNotReadyError).
                admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
                try:
                    # supervised: a worker that finds records skipped after the broker's return
                    # exits for a restart (streams.kafka_offsets), as under compose or systemd.
                    wait_caught_up(admin, broker.bootstrap, settings, 120, worker.supervised)
                finally:
                    admin.close()
                _, entries, _ = check_against_replay(
                    broker.bootstrap, settings.topics, stream.items
                )
                check_pseudonyms(entries, store, stream)
            except BaseException:
                print(worker.log_tail(80))
                raise
            finally:
                watcher.close()
                edge.close()
                store.close()
    finally:
        broker.stop(wipe=True)
