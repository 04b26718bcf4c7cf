"""`fraudstream topics` reaches a secured cluster with the workers' credentials."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from stream import topics
from stream.settings import from_env


def test_every_topic_is_created_with_the_settings_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = from_env(
        {
            "FRAUD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "FRAUD_KAFKA_SASL_USERNAME": "ops",
            "FRAUD_KAFKA_SASL_PASSWORD": "pw",
        }
    )
    clients: list[dict[str, Any]] = []
    created: list[str] = []

    class Admin:
        def __init__(self, **kwargs: Any) -> None:
            clients.append(kwargs)

        async def start(self) -> None: ...

        async def close(self) -> None: ...

        async def list_topics(self) -> list[str]:
            return []

        async def create_topics(self, new: list[Any]) -> Any:
            created.extend(t.name for t in new)
            return SimpleNamespace(topic_errors=[])

    monkeypatch.setattr(topics, "AIOKafkaAdminClient", Admin)
    asyncio.run(topics.create_all_topics(settings))
    names = settings.topics
    assert set(created) == {
        *names.inputs().values(),
        *names.outputs(),
        names.control,
        names.control_audit,
        names.verdicts,
    }
    assert clients and all(
        c["security_protocol"] == "SASL_PLAINTEXT"
        and c["sasl_plain_username"] == "ops"
        and c["sasl_plain_password"] == "pw"
        for c in clients
    )
