"""A micro-batch's outputs, sent grouped per topic-partition, arrive whole and in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from _kafka_helpers import read_topic
from aiokafka import AIOKafkaProducer

from streams.kafka_output import OutputRecord, send_grouped

pytestmark = pytest.mark.integration


def test_grouped_outputs_arrive_in_order_on_their_partitions(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    effects, dead = new_topic("vt-out-fx", partitions=3), new_topic("vt-out-dl", partitions=3)
    records: list[OutputRecord] = []
    for i in range(600):
        # ~1 KB values against 16 KB batches: every partition fills several builders.
        records.append((effects, f"pt_{i % 7}".encode(), f"{i:04d}".encode() * 256, i % 3))
        if i % 50 == 0:
            records.append((dead, None, f"unkeyed {i}".encode(), None))

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=16_384)
        await producer.start()
        try:
            for fut in await send_grouped(producer, records):
                await fut
        finally:
            await producer.stop()

    asyncio.run(send())
    got = [(r.key, r.value, r.partition) for r in read_topic(kafka_bootstrap, effects)]
    expected = [
        (key, value, partition)
        for partition in range(3)
        for topic, key, value, p in records
        if topic == effects and p == partition
    ]
    assert got == expected  # every record, on the partition named, in the order given
    unkeyed = sorted(r.value for r in read_topic(kafka_bootstrap, dead))
    assert unkeyed == sorted(v for t, _, v, _ in records if t == dead)
