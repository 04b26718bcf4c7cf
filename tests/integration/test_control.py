"""The control plane on real Kafka: the CLI publishes to the compacted
topic and its audit copy, `show` folds it as a worker does."""

from __future__ import annotations

import asyncio
import io

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from detectors.control_snapshot import ControlSnapshot
from stream import control_cli
from stream.cli import build_parser
from stream.kafka_io import read_from
from stream.settings import Settings
from tests.integration.services import Services, create_topics


def control(settings: Settings, *argv: str) -> str:
    out = io.StringIO()
    args = build_parser().parse_args(["control", *argv])
    assert control_cli.run(settings, args, out) == 0
    return out.getvalue()


async def cleanup_policy(settings: Settings, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        for _ in range(50):  # a new topic's metadata reaches the config handler shortly after
            resource = ConfigResource(ConfigResourceType.TOPIC, topic)
            [response] = await admin.describe_configs([resource])
            entries = {e[0]: e[1] for e in response.resources[0][4]}
            if "cleanup.policy" in entries:
                return str(entries["cleanup.policy"])
            await asyncio.sleep(0.1)
        raise AssertionError(response.resources)
    finally:
        await admin.close()


def test_cli_publishes_state_and_audit_and_show_folds_it(services: Services) -> None:
    settings = services.settings(actor="ops-alice")
    asyncio.run(create_topics(settings))
    assert asyncio.run(cleanup_policy(settings, settings.topics.control)) == "compact"
    assert asyncio.run(cleanup_policy(settings, settings.topics.control_audit)) == "delete"

    control(settings, "kill-switch", "on", "--reason", "misfire")
    control(settings, "mode", "r1", "shadow", "--reason", "tuning", "--actor", "bob")
    control(settings, "list", "add", "allow", "merchant", "m-7", "--reason", "vip")
    control(settings, "snooze", "user", "u-1", "--rule", "r1", "--until", "2h", "--reason", "fp")
    control(settings, "list", "remove", "allow", "merchant", "m-7", "--reason", "no longer")
    control(settings, "kill-switch", "off", "--reason", "fixed", "--id", "op-42")

    shown = control(settings, "show", "--json")
    snapshot = ControlSnapshot.from_wire(orjson.loads(shown))
    assert snapshot.applied == 6 and not snapshot.kill_switch
    assert sorted(snapshot.records) == ["kill-switch", "rule-mode:r1", "snooze:user:r1:u-1"]
    assert snapshot.records["rule-mode:r1"].meta.actor == "bob"
    assert snapshot.records["kill-switch"].meta.control_id == "op-42"
    assert snapshot.records["snooze:user:r1:u-1"].meta.actor == "ops-alice"
    assert "kill switch: off" in control(settings, "show")

    history = control(settings, "log").splitlines()
    assert len(history) == 6, history
    assert "misfire" in history[0] and "op-42" in history[-1]
    audit = asyncio.run(read_from(settings.kafka_bootstrap, settings.topics.control_audit))
    state = asyncio.run(read_from(settings.kafka_bootstrap, settings.topics.control))
    assert [m.value for m in audit] == [m.value for m in state]
    print(f"control CLI: {len(audit)} records published to state and audit topics")
