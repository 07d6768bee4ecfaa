"""Smoke tests against the real Kafka broker (scripts/kafka.sh): the clients we ship with work.

kafka-python produces and administers, aiokafka consumes and produces (idempotent and
transactional), the broker really compacts, and a faust-streaming app runs its agent, table,
changelog and offset commits against it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

pytestmark = pytest.mark.integration

NewTopic = Callable[..., str]


def _deadline(seconds: float) -> float:
    return time.monotonic() + seconds


def read_all(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from the log start to the current end offsets (kafka-python)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, consumer_timeout_ms=0
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        assert tps, f"topic {topic} has no partitions"
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = _deadline(timeout)
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"timed out reading {topic} up to {end}"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def topic_config(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
    )
    return {key: data["value"] for key, data in described["topic"][topic].items()}


# ------------------------------------------------------------------- kafka-python -> aiokafka


async def _consume_with_aiokafka(
    bootstrap: str, topic: str, group_id: str, expected: int, timeout: float = 60.0
) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received: list[Any] = []
        deadline = _deadline(timeout)
        while len(received) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                received.extend(batch)
        await consumer.commit()
        committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
        assert sum(committed.values()) == len(received)
        return received
    finally:
        await consumer.stop()


def test_kafka_python_idempotent_producer_to_aiokafka_consumer(
    kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    n, n_keys = 1000, 25
    topic = new_topic("vt-roundtrip", partitions=3)
    sent = [(f"patient-{i % n_keys:02d}", i // n_keys) for i in range(n)]

    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    try:
        futures = [
            producer.send(
                topic,
                key=key.encode(),
                value=json.dumps({"patient": key, "seq": seq}).encode(),
            )
            for key, seq in sent
        ]
        producer.flush(timeout=30)
        metadata = [f.get(timeout=30) for f in futures]
    finally:
        producer.close()
    assert len({(m.partition, m.offset) for m in metadata}) == n

    received = asyncio.run(
        _consume_with_aiokafka(kafka_bootstrap, topic, f"vt-group-{uuid.uuid4().hex}", n)
    )

    assert len(received) == n
    got = [(r.key.decode(), json.loads(r.value)) for r in received]
    assert all(value["patient"] == key for key, value in got)
    assert sorted((key, value["seq"]) for key, value in got) == sorted(sent)
    seqs_by_key: dict[str, list[int]] = defaultdict(list)
    partitions_by_key: dict[str, set[int]] = defaultdict(set)
    for record, (key, value) in zip(received, got, strict=True):
        seqs_by_key[key].append(value["seq"])
        partitions_by_key[key].add(record.partition)
    assert len(seqs_by_key) == n_keys
    for key, seqs in seqs_by_key.items():
        assert seqs == list(range(n // n_keys)), f"order broken for {key}"
        assert len(partitions_by_key[key]) == 1, f"{key} spread over partitions"
    assert len({p for ps in partitions_by_key.values() for p in ps}) > 1


# ---------------------------------------------------------------------------------- compaction


def test_compacted_topic_config_reads_back(
    kafka_admin: KafkaAdminClient, new_topic: NewTopic
) -> None:
    topic = new_topic("vt-compacted", configs={"cleanup.policy": "compact"})
    config = topic_config(kafka_admin, topic)
    assert config["cleanup.policy"] == "compact"
    assert topic in kafka_admin.list_topics()


def test_broker_compacts_superseded_values(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, new_topic: NewTopic
) -> None:
    """The log cleaner really runs: after compaction only the latest value per key is left."""
    topic = new_topic(
        "vt-compaction",
        configs={
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": "100",
        },
    )
    keys, versions = [f"k{i}" for i in range(10)], 20
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for version in range(versions):
            for key in keys:
                producer.send(topic, key=key.encode(), value=str(version).encode())
        producer.flush(timeout=30)
        # Only closed segments are cleaned; a segment rolls when a write arrives after
        # segment.ms, so keep writing a marker key until the cleaner has done its work.
        deadline = _deadline(90)
        while True:
            producer.send(topic, key=b"tick", value=b"x").get(timeout=30)
            data = [r for r in read_all(kafka_bootstrap, topic) if r.key != b"tick"]
            if len(data) == len(keys):
                break
            assert time.monotonic() < deadline, f"not compacted: {len(data)} records remain"
            time.sleep(0.5)  # polling interval, not synchronisation
    finally:
        producer.close()
    assert {r.key.decode(): r.value.decode() for r in data} == {k: str(versions - 1) for k in keys}


# ---------------------------------------------------------------------------- aiokafka producer


async def _aiokafka_idempotent_produce(bootstrap: str, topic: str, n: int) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        offsets = []
        for i in range(n):
            meta = await producer.send_and_wait(topic, key=b"k", value=f"v{i}".encode())
            offsets.append(meta.offset)
        return offsets
    finally:
        await producer.stop()


def test_aiokafka_idempotent_producer(kafka_bootstrap: str, new_topic: NewTopic) -> None:
    topic = new_topic("vt-aio-idem")
    offsets = asyncio.run(_aiokafka_idempotent_produce(kafka_bootstrap, topic, 200))
    assert offsets == list(range(200))
    records = read_all(kafka_bootstrap, topic)
    assert [r.value.decode() for r in records] == [f"v{i}" for i in range(200)]


async def _aiokafka_transactions(bootstrap: str, topic: str) -> list[str]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"vt-tx-{uuid.uuid4().hex}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(10):
                await producer.send(topic, key=b"k", value=f"committed-{i}".encode())
        await producer.begin_transaction()
        for i in range(5):
            await producer.send(topic, key=b"k", value=f"aborted-{i}".encode())
        await producer.abort_transaction()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = AioTopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[str] = []
        deadline = _deadline(30)
        while await consumer.position(tp) < end:
            assert time.monotonic() < deadline, "timed out reading the transactional topic"
            for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                values.extend(r.value.decode() for r in batch)
        return values
    finally:
        await consumer.stop()


def test_aiokafka_transactional_producer_read_committed(
    kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = new_topic("vt-aio-tx")
    values = asyncio.run(_aiokafka_transactions(kafka_bootstrap, topic))
    assert values == [f"committed-{i}" for i in range(10)]


# ------------------------------------------------------------------------------ faust-streaming


async def _run_faust_counter(
    bootstrap: str,
    app_id: str,
    source: str,
    n: int,
    keys: list[str],
    kafka_admin: Any,
    datadir: Path,
) -> tuple[list[tuple[str, int]], dict[str, int]]:
    # Built inside the running loop: faust binds the app to the loop it first sees.
    # Note: faust.App silently ignores misspelt settings; these names are checked.
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(datadir),  # faust makes <app-id>-data/ in the CWD even for memory://
        topic_partitions=1,
        topic_replication_factor=1,
        table_standby_replicas=0,
        web_enabled=False,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
    )
    source_topic = app.topic(source, key_type=str, value_type=None)
    counts = app.Table("counts", default=int, partitions=1)
    processed: list[tuple[str, int]] = []

    @app.agent(source_topic)
    async def count(stream: Any) -> None:
        async for key, event in stream.items():
            counts[key] += 1
            processed.append((key, event["seq"]))

    source_tp = faust.types.TP(source, 0)
    await app.start()
    try:
        deadline = _deadline(60)
        while source_tp not in app.consumer.assignment():
            assert time.monotonic() < deadline, "faust consumer never got the source partition"
            await asyncio.sleep(0.1)

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        try:
            for i in range(n):
                key = keys[i % len(keys)]
                producer.send(
                    source, key=key.encode(), value=json.dumps({"seq": i // len(keys)}).encode()
                )
            producer.flush(timeout=30)
        finally:
            producer.close()

        deadline = _deadline(60)
        while len(processed) < n:
            assert time.monotonic() < deadline, f"agent processed {len(processed)}/{n}"
            await asyncio.sleep(0.1)

        # at_least_once: faust commits the offsets of processed events on its own.
        deadline = _deadline(30)
        while True:
            committed = kafka_admin.list_group_offsets(app_id).get(app_id, {})
            offset = committed.get(TopicPartition(source, 0))
            if offset is not None and offset.offset == n:
                break
            assert time.monotonic() < deadline, f"faust committed {offset}, expected {n}"
            await asyncio.sleep(0.2)
        table = dict(counts.items())
    finally:
        await app.stop()
    return processed, table


def test_faust_agent_counts_into_table(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, new_topic: NewTopic, tmp_path: Path
) -> None:
    n, keys = 100, ["p-a", "p-b", "p-c", "p-d"]
    app_id = f"vt-faust-{uuid.uuid4().hex}"
    source = new_topic("vt-faust-in")
    try:
        processed, table = asyncio.run(
            _run_faust_counter(
                kafka_bootstrap, app_id, source, n, keys, kafka_admin, tmp_path / "faust"
            )
        )
        assert len(processed) == n
        for key in keys:
            assert [seq for k, seq in processed if k == key] == list(range(n // len(keys)))
        assert table == dict.fromkeys(keys, n // len(keys))

        # The table's changelog is a real, compacted Kafka topic holding the counts.
        changelog = f"{app_id}-counts-changelog"
        assert topic_config(kafka_admin, changelog)["cleanup.policy"] == "compact"
        latest = {
            json.loads(r.key): json.loads(r.value) for r in read_all(kafka_bootstrap, changelog)
        }
        assert latest == table
    finally:
        internal = [t for t in kafka_admin.list_topics() if t.startswith(app_id)]
        if internal:
            kafka_admin.delete_topics(internal)
