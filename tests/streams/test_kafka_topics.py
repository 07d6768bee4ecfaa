"""Where a patient's records land: one partition number on every topic, whichever client."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner as KafkaPythonPartitioner

from streams.kafka_topics import key_partition


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_the_worker_routes_outputs_where_the_edge_producer_puts_inputs(
    key: bytes, partitions: int
) -> None:
    """The worker names output partitions itself (key_partition); the edge producer leaves it to
    kafka-python. Both must agree, or a patient's effects would leave their co-partition."""
    assert key_partition(key, partitions) == KafkaPythonPartitioner().partition(
        "t", key, key, b"", b"", _Cluster(partitions)
    )


class _Cluster:
    """The three questions kafka-python's partitioner asks of its cluster metadata."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def test_partitions_match_the_java_client() -> None:
    """Kafka's own producer (Java) is what other services on the cluster use; these are its
    partitions for these keys on a 1000-partition topic (kafka-python's compatibility vectors)."""
    keys = (b"", b"a", b"ab", b"abc", b"123456789", b"\x00 ")
    assert [key_partition(k, 1000) for k in keys] == [681, 524, 434, 107, 566, 742]
