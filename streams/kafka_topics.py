"""Topic administration with kafka-python: create what is missing, with the right policies.

Every topic has the same partition count and is keyed by the patient token, so a patient's
wearable and EHR records, twin state and effects share a partition number and one worker owns
the patient's whole stream. Workers need their input topics to exist before they start (faust
ignores a missing input topic), so ``worker`` and ``produce`` both call ``ensure_topics``.
"""

from __future__ import annotations

import logging

from aiokafka.partitioner import DefaultPartitioner
from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from streams.errors import ConfigError
from streams.kafka_settings import KafkaSettings

log = logging.getLogger(__name__)


def key_partition(key: bytes, partitions: int) -> int:
    """The partition of ``key`` on a topic of ``partitions``: the clients' default partitioner.

    Where the edge producer (kafka-python) puts a patient's records, and where the worker's
    producer (aiokafka) would put any keyed output; the worker names it itself so that its
    producer does not hash the key again for every record.
    """
    everything = list(range(partitions))
    return int(DefaultPartitioner()(key, everything, everything))


def topic_configs(settings: KafkaSettings) -> dict[str, dict[str, str]]:
    t = settings.topics
    week = str(7 * 24 * 3600 * 1000)
    return {
        t.wearable: {"retention.ms": week},
        t.ehr: {"retention.ms": str(30 * 24 * 3600 * 1000)},
        # Latest state per patient: compaction keeps one record per key forever.
        t.twin_state: {"cleanup.policy": "compact"},
        t.effects: {"retention.ms": week},
        t.alerts: {"retention.ms": str(30 * 24 * 3600 * 1000)},
        t.dead_letter: {"retention.ms": str(30 * 24 * 3600 * 1000)},
        t.alert_commands: {"retention.ms": str(30 * 24 * 3600 * 1000)},
    }


def ensure_topics(settings: KafkaSettings, admin: KafkaAdminClient | None = None) -> list[str]:
    """Create missing topics; refuse to run on topics whose partition count differs."""
    own = admin is None
    client = admin or KafkaAdminClient(
        bootstrap_servers=settings.bootstrap, client_id="vitaltwin-admin"
    )
    try:
        existing = set(client.list_topics())
        wanted = topic_configs(settings)
        missing = {
            name: {
                "num_partitions": settings.partitions,
                "replication_factor": settings.replication_factor,
                "configs": config,
            }
            for name, config in wanted.items()
            if name not in existing
        }
        created: list[str] = []
        if missing:
            try:
                client.create_topics(missing, wait_for_metadata=True)
                created = sorted(missing)
            except TopicAlreadyExistsError:
                pass  # another worker created them between our list and create
        described = client.describe_topics(list(wanted))
        for topic in described:
            n = len(topic.get("partitions") or [])
            if n and n != settings.partitions:
                raise ConfigError(
                    f"topic {topic['topic']} has {n} partitions, settings say "
                    f"{settings.partitions}: co-partitioning would break"
                )
        if created:
            log.info("created topics %s", ", ".join(created))
        return created
    finally:
        if own:
            client.close()
