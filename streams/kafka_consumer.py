"""faust's aiokafka consumer with a fetch wait the worker chooses (faust fixes it at 1.5 s).

Why it matters: the worker consumes the wearable, EHR and alert-command topics from one
broker connection, and aiokafka keeps one fetch request in flight per broker. It leaves out
of the next request every partition whose last fetched records are still being handed to
faust, so under a steady wearable stream the request often names only the partitions with
nothing new - the EHR and command topics, quiet most of the time. The broker holds such a
request for the full fetch wait before answering empty, and the wearable records that arrived
meanwhile wait with it. Measured at 5,000 samples/s in records of 3 samples: records reached
the agent 1.2-1.8 s after they were produced, with the worker half idle, and every third
fetch took 1.50 s. The wait is the price of an empty answer only: a request with data to
return is answered at once whatever the wait, so a short one costs a few more empty
round trips per second on an idle stream.

aiokafka reads the wait from its consumer when it starts (``_fetch_max_wait_ms``, aiokafka
< 0.15, pinned); the consumer thread below sets it on the consumer faust builds, before start.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


def use_fetch_wait(app: faust.App, wait_ms: int) -> None:
    """Make ``app``'s consumer ask the broker to answer within ``wait_ms`` when it has no data.

    Call before the app starts (its consumer is created at start).
    """

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = wait_ms
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # The transport builds the app's consumer from this attribute (faust.transport.base).
    app.transport.Consumer = Consumer
