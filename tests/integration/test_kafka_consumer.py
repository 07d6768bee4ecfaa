"""The worker's consumer asks the broker for the fetch wait it was configured with.

faust builds aiokafka's consumer with a 1.5 s fetch wait; the worker replaces it
(``streams.kafka_consumer``) because that wait, spent on quiet topics, delayed a busy stream's
records by as much (see that module). Checked on a consumer started against the real broker:
the wait reaches the fetcher that builds the fetch requests.
"""

from __future__ import annotations

import asyncio

import pytest

from streams.kafka_app import make_app
from streams.kafka_settings import KafkaSettings

pytestmark = pytest.mark.integration


def test_worker_consumer_fetches_with_the_configured_wait(kafka_bootstrap: str) -> None:
    settings = KafkaSettings(
        bootstrap=kafka_bootstrap, topic_prefix="vt-fetch-wait", fetch_wait_ms=70
    )
    app = make_app(settings)

    async def started_fetch_wait() -> int:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await consumer.start()
        try:
            return int(consumer._fetcher._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert asyncio.run(started_fetch_wait()) == 70
