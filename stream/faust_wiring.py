"""faust, configured from Settings: the app, its Kafka credentials and its
worker. Only the wiring: what the agents do is stream.worker's job."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import faust
from faust.types import TP

from stream.alignment import Part
from stream.batch_delivery import BATCH_QUEUE_MAX
from stream.batch_delivery import install as install_batch_transport
from stream.blocked import BlockedPartitions
from stream.codec import SourceRecord
from stream.kafka_security import is_sasl, ssl_context
from stream.kafka_transport import install as install_transport
from stream.settings import KafkaProtocol, KafkaSecurity, Settings

__all__ = [
    "abandon",
    "faust_app",
    "faust_worker",
    "kafka_credentials",
    "source_record",
    "topic_partitions",
]


def kafka_credentials(security: KafkaSecurity) -> Any:
    """faust credentials for the configured protocol (None: plaintext)."""
    context = ssl_context(security)
    if security.protocol is KafkaProtocol.SSL:
        return faust.SSLCredentials(context)
    if is_sasl(security):
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password,
            mechanism=security.sasl_mechanism,
            ssl_context=context,
        )
    return None


def faust_app(
    settings: Settings, web_enabled: bool = True, blocked: BlockedPartitions | None = None
) -> faust.App:
    """A faust.App configured only from Settings: `env={}` stops faust from
    letting variables like BROKER_URL or WEB_PORT override our settings."""
    app = faust.App(
        settings.app_id,
        env={},
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=kafka_credentials(settings.kafka_security),
        store="memory://",
        datadir=settings.data_dir,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_heartbeat_s,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        topic_partitions=settings.dev_partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        producer_linger=0.005,
        producer_max_request_size=4 * 1024 * 1024,
        worker_redirect_stdouts=False,
        web_enabled=web_enabled,
        # With batch delivery a channel's queue holds partition batches, not records.
        **cast(Any, {"stream_buffer_maxsize": BATCH_QUEUE_MAX} if settings.batch_delivery else {}),
    )
    if blocked is None:
        blocked = BlockedPartitions(settings.blocked_retry_s)
    if settings.batch_delivery:
        install_batch_transport(app, blocked)
    else:
        install_transport(app, blocked)
    return app


def faust_worker(app: faust.App, log_level: str) -> faust.Worker:
    """faust's worker, without its terminal spinner. At WARNING and above the
    spinner sets the root logger to DEBUG (it spins on every record), so every
    debug call in aiokafka and faust, per request and per fetch, would build
    a LogRecord that nobody prints."""
    worker = faust.Worker(app, loglevel=log_level.lower())
    worker.spinner = None
    return worker


def source_record(message: Any) -> SourceRecord:
    """From a faust message (its timestamp is in seconds, aiokafka's in ms)."""
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=int((message.timestamp or 0) * 1000),
    )


def topic_partitions(parts: Iterable[Part]) -> list[TP]:
    return [TP(topic, partition) for topic, partition in parts]


def abandon(messages: Any) -> None:
    """Leave messages uncommitted on purpose: flagging them acked keeps faust
    from registering an ack (so the offset is never committed and the record
    is redelivered) and releases faust's wait for unacked messages on stop."""
    for message in messages:
        message.acked = True
