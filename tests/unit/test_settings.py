from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from detectors.errors import ConfigError
from stream.settings import ENV_NAMES, OS_USER_VARIABLES, Settings, env_name, from_env, mask_url

REPO = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = from_env({})
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.topics.orders == "orders" and s.topics.dlq == "fraud-dlq"
    assert s == Settings()


def test_values_are_parsed_and_typed() -> None:
    s = from_env(
        {
            "FRAUD_WEB_PORT": "7000",
            "FRAUD_REDIS_CLUSTER": "true",
            "FRAUD_TOPIC_ORDERS": "o2",
            "FRAUD_BATCH_WITHIN_S": "0.2",
            "FRAUD_LOG_LEVEL": "debug",
        }
    )
    assert s.web_port == 7000 and s.redis_cluster is True and s.topics.orders == "o2"
    assert s.batch_within_s == 0.2 and s.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FRAUD_WEB_PORT", "http"),
        ("FRAUD_BATCH_MAX", "0"),
        ("FRAUD_REDIS_CLUSTER", "maybe"),
        ("FRAUD_DEDUP_HORIZON_S", "-3"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env({name: value})
    assert info.value.setting == name


def test_secrets_are_never_printed() -> None:
    s = from_env({"FRAUD_REDIS_URL": "redis://app:s3cr3t@redis:6379/0"})
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in str(s.redacted())
    assert mask_url("rediss://:pw@h:1") == "rediss://***@h:1"
    assert mask_url("redis://h:1/0") == "redis://h:1/0"


def test_the_key_hash_secret_is_masked_and_never_echoed() -> None:
    secret = "k3y-hash-" + "x" * 40
    s = from_env({"FRAUD_KEY_HASH_SECRET": secret})
    assert s.key_hash_secret == secret
    assert secret not in repr(s) and s.redacted()["key_hash_secret"] == "***"
    assert from_env({}).redacted()["key_hash_secret"] is None
    with pytest.raises(ConfigError) as info:
        from_env({"FRAUD_KEY_HASH_SECRET": "too-short-s3cr3t"})
    assert info.value.setting == "FRAUD_KEY_HASH_SECRET" and "s3cr3t" not in str(info.value)


class Asked(dict[str, str]):
    """An empty environment that remembers every variable asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.names.add(key)
        return super().get(key, default)


def test_from_env_reads_exactly_the_variables_of_the_settings_fields() -> None:
    env = Asked()
    from_env(env)
    assert env.names == ENV_NAMES | set(OS_USER_VARIABLES)


def test_the_actor_defaults_to_the_os_user() -> None:
    assert from_env({"LOGNAME": "bob"}).actor == "bob"
    assert from_env({"USER": "amy", "LOGNAME": "bob"}).actor == "amy"
    assert from_env({"USER": "amy", "FRAUD_ACTOR": "ops-bot"}).actor == "ops-bot"
    assert from_env({}).actor == Settings().actor


def test_every_settings_field_has_its_variable() -> None:
    nested = {"topics", "kafka_security"}
    plain = {f.name for f in dataclasses.fields(Settings)} - nested
    assert {env_name(n) for n in plain} <= ENV_NAMES
    assert env_name("kafka_security", "protocol") == "FRAUD_KAFKA_SECURITY_PROTOCOL"
    assert env_name("topics", "dlq") == "FRAUD_TOPIC_DLQ"


def test_only_settings_reads_the_environment() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for pkg in ("stream", "detectors", "console")
        for p in (REPO / pkg).rglob("*.py")
        if "os.environ" in p.read_text() and p.name not in {"settings.py", "cli.py"}
    ]
    assert offenders == []


def test_kafka_sasl_ssl_settings_build_credentials_without_leaking_the_password() -> None:
    from stream.faust_wiring import kafka_credentials

    env = {
        "FRAUD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "FRAUD_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "FRAUD_KAFKA_SASL_USERNAME": "fraud",
        "FRAUD_KAFKA_SASL_PASSWORD": "kafka-s3cret",
    }
    s = from_env(env)
    creds = kafka_credentials(s.kafka_security)
    assert creds.username == "fraud" and creds.password == "kafka-s3cret"
    assert creds.mechanism.value == "SCRAM-SHA-512" and creds.protocol.value == "SASL_SSL"
    assert creds.ssl_context is not None
    for text in (repr(s), str(s.redacted()), repr(s.kafka_security), repr(creds)):
        assert "kafka-s3cret" not in text


def test_aiokafka_clients_get_the_same_credentials() -> None:
    """The control follower is an aiokafka client outside faust."""
    from aiokafka import AIOKafkaConsumer

    from stream.kafka_security import aiokafka_security

    env = {
        "FRAUD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "FRAUD_KAFKA_SASL_MECHANISM": "scram-sha-256",
        "FRAUD_KAFKA_SASL_USERNAME": "fraud",
        "FRAUD_KAFKA_SASL_PASSWORD": "kafka-s3cret",
    }
    options = aiokafka_security(from_env(env).kafka_security)
    assert options["security_protocol"] == "SASL_SSL" and options["ssl_context"] is not None
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "fraud",
        "kafka-s3cret",
    )

    async def build() -> None:  # aiokafka accepts them (it checks them when built)
        AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **options)

    asyncio.run(build())
    assert aiokafka_security(from_env({}).kafka_security) == {"security_protocol": "PLAINTEXT"}


def test_kafka_security_is_validated() -> None:
    with pytest.raises(ConfigError, match="SASL needs"):
        from_env({"FRAUD_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext"})
    with pytest.raises(ConfigError):
        from_env({"FRAUD_KAFKA_SECURITY_PROTOCOL": "carrier-pigeon"})
    from stream.faust_wiring import kafka_credentials

    assert kafka_credentials(from_env({}).kafka_security) is None
    ssl_only = kafka_credentials(from_env({"FRAUD_KAFKA_SECURITY_PROTOCOL": "ssl"}).kafka_security)
    assert ssl_only.protocol.value == "SSL"


def test_to_env_round_trips_every_setting() -> None:
    from pathlib import Path

    from stream.settings import KafkaProtocol, KafkaSecurity, TopicNames, to_env

    s = Settings(
        kafka_bootstrap="k:1",
        redis_url="redis://u:pw@r:2/3",
        redis_namespace="ns-1",
        app_id="app",
        topics=TopicNames().with_suffix("-x"),
        web_port=7001,
        batch_max=7,
        batch_within_s=0.25,
        dedup_horizon_s=99,
        allowed_lateness_s=0,
        redis_cluster=True,
        rules_file=Path("/tmp/rules.yaml"),
        max_future_skew_s=5,
        log_level="DEBUG",
        kafka_security=KafkaSecurity(
            KafkaProtocol.SASL_SSL, "SCRAM-SHA-256", "user", "pw", Path("/ca.pem")
        ),
    )
    env = to_env(s)
    assert set(env) <= ENV_NAMES
    assert from_env(env) == s
