"""Send a simulated stream to the configured Kafka input topics.

One producer for all four topics, records sent in event-time order: the
worker's windows follow event time and drop events older than the allowed
lateness, so a whole topic sent before the next would make the later topics'
events "too late" for entities the earlier topics already moved forward.
Key = merchant_id, as the platform services publish.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaProducer

from stream.kafka_io import MAX_REQUEST_BYTES
from stream.settings import Settings
from stream.simulation.generator import TimedEvent, contract_value

__all__ = ["publish"]


async def publish(settings: Settings, timeline: Sequence[TimedEvent]) -> int:
    """Produce every event and wait for all acknowledgements; returns the count.

    Plaintext bootstrap only, like the other local tools (`demo`, `bench`).
    """
    names = settings.topics.inputs()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        max_request_size=MAX_REQUEST_BYTES,
        linger_ms=20,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                names[topic],
                value=orjson.dumps(contract_value(topic, event)),
                key=event.merchant_id.encode(),
            )
            for topic, event in timeline
        ]
        await producer.flush()
        for future in futures:
            await future
    finally:
        await producer.stop()
    return len(futures)
