"""Creating fraudstream's topics: the `topics` command (docker-compose's init
job) and every tool that runs against a broker of its own (local services,
benchmarks, tests). The worker itself never declares topics (faust's
`topic_allow_declare` is off), so an operator creates them once, here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.kafka_security import aiokafka_security
from stream.settings import Settings

__all__ = [
    "HEALTH_CONFIGS",
    "INPUT_TOPIC_MAX_BYTES",
    "create_all_topics",
    "create_control_topics",
    "create_topics",
]

# Above the worker's own oversize limit, so Kafka accepts an oversized event
# and the worker dead-letters it instead of the producer failing.
INPUT_TOPIC_MAX_BYTES = 4 * 1024 * 1024


async def create_topics(
    bootstrap: str,
    names: Sequence[str],
    partitions: int,
    max_message_bytes: int | None = None,
    extra_configs: Mapping[str, str] | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> None:
    """Create topics that do not exist yet (existing ones are left as they are).
    `client_options`: extra aiokafka client arguments (credentials)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=30000, **(client_options or {})
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        configs = {"max.message.bytes": str(max_message_bytes)} if max_message_bytes else {}
        configs.update(extra_configs or {})
        new = [
            NewTopic(n, partitions, 1, topic_configs=configs) for n in names if n not in existing
        ]
        if new:
            response = await admin.create_topics(new)
            # Refusals come back as error codes, not exceptions (36: already exists).
            failed = [
                f"{t[0]}: error {t[1]} {t[2] if len(t) > 2 else ''}".strip()
                for t in response.topic_errors
                if t[1] not in (0, 36)
            ]
            if failed:
                raise RuntimeError(f"cannot create topics: {'; '.join(failed)}")
    finally:
        await admin.close()


async def create_all_topics(settings: Settings) -> None:
    """The input topics (with room for oversized events), the output topics
    and the control topics."""
    topics, options = settings.topics, aiokafka_security(settings.kafka_security)
    await create_topics(
        settings.kafka_bootstrap,
        list(topics.inputs().values()),
        settings.dev_partitions,
        INPUT_TOPIC_MAX_BYTES,
        client_options=options,
    )
    compacted = [topics.merchant_health]
    await create_topics(
        settings.kafka_bootstrap,
        [n for n in topics.outputs() if n not in compacted],
        settings.dev_partitions,
        client_options=options,
    )
    await create_topics(
        settings.kafka_bootstrap,
        compacted,
        settings.dev_partitions,
        extra_configs=HEALTH_CONFIGS,
        client_options=options,
    )
    await create_control_topics(settings)
    # Analysts' verdicts: decisions on record, kept as the audit topic is.
    await create_topics(
        settings.kafka_bootstrap,
        [topics.verdicts],
        settings.dev_partitions,
        extra_configs=AUDIT_CONFIGS,
        client_options=options,
    )


# One partition each: control records are few, and one partition keeps one
# order for the fold and for the history.
CONTROL_PARTITIONS = 1
# The state topic keeps the last record per key forever; the audit topic
# keeps every record (Kafka's default retention would drop history).
CONTROL_CONFIGS = {"cleanup.policy": "compact"}
AUDIT_CONFIGS = {"cleanup.policy": "delete", "retention.ms": "-1"}
# merchant-health keeps each merchant's last snapshot (key = merchant id);
# merchant-health-changes keeps Kafka's default retention, like the alerts.
HEALTH_CONFIGS = {"cleanup.policy": "compact"}


async def create_control_topics(settings: Settings) -> None:
    topics, bootstrap = settings.topics, settings.kafka_bootstrap
    options = aiokafka_security(settings.kafka_security)
    for name, configs in ((topics.control, CONTROL_CONFIGS), (topics.control_audit, AUDIT_CONFIGS)):
        await create_topics(
            bootstrap, [name], CONTROL_PARTITIONS, extra_configs=configs, client_options=options
        )
