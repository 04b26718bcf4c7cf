"""One settings object, built once at the entry point from `FRAUD_*` variables.

Nothing else in fraudstream reads `os.environ`. Secrets (a password inside
the Redis URL, the key hash secret) are never printed: `redacted()` and
`__repr__` mask them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from detectors.errors import ConfigError
from detectors.events import Topic
from detectors.money import PerCurrency
from stream.settings_values import (
    MIN_SECRET_LENGTH,
    boolean,
    money_caps,
    namespace,
    non_negative,
    non_negative_float,
    positive,
    ring_size,
    secret,
    share,
)

__all__ = [
    "ENV_NAMES",
    "MIN_SECRET_LENGTH",
    "OS_USER_VARIABLES",
    "PREFIX",
    "KafkaProtocol",
    "KafkaSecurity",
    "Settings",
    "TopicNames",
    "env_name",
    "from_env",
    "mask_url",
    "to_env",
]

PREFIX = "FRAUD_"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TopicNames:
    orders: str = "orders"
    refunds: str = "refunds"
    voucher_redemptions: str = "voucher-redemptions"
    payouts: str = "payouts"
    alerts: str = "risk-alerts"
    benefit_freezes: str = "benefit-freezes"
    fund_freezes: str = "fund-freezes"
    dlq: str = "fraud-dlq"
    control: str = "risk-control"  # compacted: the control plane's state (detectors.control)
    control_audit: str = "risk-control-audit"  # every control record, never compacted
    merchant_health: str = "merchant-health"  # compacted: each merchant's last health snapshot
    merchant_health_changes: str = "merchant-health-changes"  # every band change
    verdicts: str = "risk-verdicts"  # analysts' verdicts on alerts (detectors.verdicts)

    def input_name(self, topic: Topic) -> str:
        return {
            Topic.ORDERS: self.orders,
            Topic.REFUNDS: self.refunds,
            Topic.VOUCHER_REDEMPTIONS: self.voucher_redemptions,
            Topic.PAYOUTS: self.payouts,
        }[topic]

    def inputs(self) -> dict[Topic, str]:
        return {t: self.input_name(t) for t in Topic}

    def outputs(self) -> list[str]:
        return [
            self.alerts,
            self.benefit_freezes,
            self.fund_freezes,
            self.dlq,
            self.merchant_health,
            self.merchant_health_changes,
        ]

    def with_suffix(self, suffix: str) -> TopicNames:
        """Every topic renamed `<name><suffix>` (test isolation, side-by-side runs)."""
        return TopicNames(
            **{f.name: getattr(self, f.name) + suffix for f in dataclasses.fields(self)}
        )


class KafkaProtocol(StrEnum):
    PLAINTEXT = "plaintext"
    SSL = "ssl"
    SASL_PLAINTEXT = "sasl_plaintext"
    SASL_SSL = "sasl_ssl"


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How workers authenticate to Kafka. The password never appears in a repr."""

    protocol: KafkaProtocol = KafkaProtocol.PLAINTEXT
    sasl_mechanism: str = "PLAIN"  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def redacted(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["sasl_password"] = "***" if self.sasl_password else None
        return {k: (str(v) if isinstance(v, Path | StrEnum) else v) for k, v in out.items()}


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security: KafkaSecurity = field(default_factory=lambda: KafkaSecurity())
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    redis_namespace: str = "fs"
    # HMAC key of the ids in Redis keys (stream.store.keys); None: no store can
    # be opened, except by commands whose state is their own (backtest, demo, bench).
    key_hash_secret: str | None = field(default=None, repr=False)
    app_id: str = "fraudstream"
    topics: TopicNames = field(default_factory=TopicNames)
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_max: int = 200
    batch_within_s: float = 0.01
    max_event_bytes: int = 256 * 1024
    dlq_value_max_bytes: int = 64 * 1024
    dedup_horizon_s: int = 24 * 3600
    allowed_lateness_s: int = 3600
    # Event ids kept with each count and sum an alert can list, and listed
    # per alert (detectors.counted); 0: none kept.
    counted_events: int = 20
    kafka_session_timeout_s: float = 30.0
    kafka_heartbeat_s: float = 3.0
    redis_timeout_s: float = 5.0
    retry_max_backoff_s: float = 10.0
    # A partition stopped at a batch it cannot read is fetched again this
    # often (stream.blocked); 0: only after a rebalance or restart.
    blocked_retry_s: float = 60.0
    rules_file: Path | None = None  # None: the rule set shipped with fraudstream
    max_future_skew_s: int = 600
    # Event-time alignment of the input topics during a backlog (stream.alignment).
    # Off only for single-topic rule sets: cross-topic rules need it.
    align_enabled: bool = True
    align_slack_s: float = 60.0
    align_stall_s: float = 60.0  # a partition that does not move this long stops the merge
    align_max_held: int = 10_000  # records held before the partitions ahead are paused
    redis_cluster: bool = False
    # The worker's local files (faust's datadir); None: `<app_id>-data` in the
    # working directory, faust's own default.
    data_dir: Path | None = None
    dev_home: Path = Path(".fraudstream")
    dev_partitions: int = 4
    log_level: str = "INFO"
    # Who publishes control records (`fraudstream control --actor` overrides);
    # from_env defaults it to the OS user (USER, LOGNAME).
    actor: str = "unknown"
    # The global circuit breaker (detectors.guardrails): fund freezes per hour
    # allowed per active merchant, the count below which it never trips, and
    # per currency the payout value (minor units) fund freezes may hold per hour.
    breaker_freeze_share: float = 0.01
    breaker_min_freezes: int = 20
    breaker_value_caps: PerCurrency = field(default_factory=lambda: PerCurrency(()))
    # Input records reach agents one partition batch at a time, acked in bulk
    # (stream.batch_delivery); false: faust's per-record path (take_events).
    batch_delivery: bool = True

    def kafka_host_port(self) -> tuple[str, int]:
        first = self.kafka_bootstrap.split(",")[0]
        host, _, port = first.rpartition(":")
        return host or "127.0.0.1", int(port)

    def redacted(self) -> dict[str, Any]:
        """All settings as a dict safe to log: credentials in URLs masked."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["redis_url"] = mask_url(self.redis_url)
        out["key_hash_secret"] = "***" if self.key_hash_secret else None
        out["kafka_security"] = self.kafka_security.redacted()
        out["topics"] = dataclasses.asdict(self.topics)
        out["rules_file"] = str(self.rules_file) if self.rules_file else "(built-in default)"
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}

    def __repr__(self) -> str:
        return f"Settings({self.redacted()!r})"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_URL_CREDENTIALS = re.compile(r"(?<=://)([^@/]*)@")


def mask_url(url: str) -> str:
    """`redis://user:secret@host` → `redis://***@host`."""
    return _URL_CREDENTIALS.sub("***@", url)


_SECRETS = frozenset({"KEY_HASH_SECRET", "KAFKA_SASL_PASSWORD", "REDIS_URL"})


def _parse(env: Mapping[str, str], name: str, conv: Callable[[str], T], default: T) -> T:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        return conv(raw)
    except (ValueError, TypeError) as exc:
        shown = "(secret)" if name in _SECRETS else repr(raw)
        raise ConfigError(PREFIX + name, f"cannot parse {shown}: {exc}") from None


def _kafka_security(env: Mapping[str, str]) -> KafkaSecurity:
    d = KafkaSecurity()
    security = KafkaSecurity(
        protocol=_parse(
            env, "KAFKA_SECURITY_PROTOCOL", lambda v: KafkaProtocol(v.lower()), d.protocol
        ),
        sasl_mechanism=_parse(env, "KAFKA_SASL_MECHANISM", str.upper, d.sasl_mechanism),
        sasl_username=_parse(env, "KAFKA_SASL_USERNAME", str, d.sasl_username),
        sasl_password=_parse(env, "KAFKA_SASL_PASSWORD", str, d.sasl_password),
        ssl_cafile=_parse(env, "KAFKA_SSL_CAFILE", Path, d.ssl_cafile),
        ssl_certfile=_parse(env, "KAFKA_SSL_CERTFILE", Path, d.ssl_certfile),
        ssl_keyfile=_parse(env, "KAFKA_SSL_KEYFILE", Path, d.ssl_keyfile),
    )
    sasl = security.protocol in (KafkaProtocol.SASL_PLAINTEXT, KafkaProtocol.SASL_SSL)
    if sasl and not (security.sasl_username and security.sasl_password):
        raise ConfigError(
            PREFIX + "KAFKA_SASL_USERNAME",
            "SASL needs FRAUD_KAFKA_SASL_USERNAME and FRAUD_KAFKA_SASL_PASSWORD",
        )
    if security.sasl_mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        raise ConfigError(
            PREFIX + "KAFKA_SASL_MECHANISM", "expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
        )
    return security


OS_USER_VARIABLES = ("USER", "LOGNAME")
"""The one non-FRAUD_ read: the OS user, default actor of control records."""


def _os_user(env: Mapping[str, str]) -> str | None:
    return next((env[n] for n in OS_USER_VARIABLES if env.get(n)), None)


def from_env(env: Mapping[str, str]) -> Settings:
    """Build Settings from a mapping (pass `os.environ` at the entry point)."""
    d = Settings()
    topic_fields = dataclasses.fields(TopicNames)
    topics = TopicNames(
        **{
            f.name: _parse(env, f"TOPIC_{f.name.upper()}", str, str(f.default))
            for f in topic_fields
        }
    )
    pos_int, pos_float = positive(int), positive(float)
    return Settings(
        kafka_bootstrap=_parse(env, "KAFKA_BOOTSTRAP", str, d.kafka_bootstrap),
        kafka_security=_kafka_security(env),
        redis_url=_parse(env, "REDIS_URL", str, d.redis_url),
        redis_namespace=_parse(env, "REDIS_NAMESPACE", namespace, d.redis_namespace),
        key_hash_secret=_parse(env, "KEY_HASH_SECRET", secret, d.key_hash_secret),
        app_id=_parse(env, "APP_ID", str, d.app_id),
        topics=topics,
        web_host=_parse(env, "WEB_HOST", str, d.web_host),
        web_port=_parse(env, "WEB_PORT", pos_int, d.web_port),
        batch_max=_parse(env, "BATCH_MAX", pos_int, d.batch_max),
        batch_within_s=_parse(env, "BATCH_WITHIN_S", pos_float, d.batch_within_s),
        max_event_bytes=_parse(env, "MAX_EVENT_BYTES", pos_int, d.max_event_bytes),
        dlq_value_max_bytes=_parse(env, "DLQ_VALUE_MAX_BYTES", pos_int, d.dlq_value_max_bytes),
        dedup_horizon_s=_parse(env, "DEDUP_HORIZON_S", pos_int, d.dedup_horizon_s),
        allowed_lateness_s=_parse(env, "ALLOWED_LATENESS_S", non_negative, d.allowed_lateness_s),
        counted_events=_parse(env, "COUNTED_EVENTS", ring_size, d.counted_events),
        kafka_session_timeout_s=_parse(
            env, "KAFKA_SESSION_TIMEOUT_S", pos_float, d.kafka_session_timeout_s
        ),
        kafka_heartbeat_s=_parse(env, "KAFKA_HEARTBEAT_S", pos_float, d.kafka_heartbeat_s),
        redis_timeout_s=_parse(env, "REDIS_TIMEOUT_S", pos_float, d.redis_timeout_s),
        retry_max_backoff_s=_parse(env, "RETRY_MAX_BACKOFF_S", pos_float, d.retry_max_backoff_s),
        blocked_retry_s=_parse(env, "BLOCKED_RETRY_S", non_negative_float, d.blocked_retry_s),
        rules_file=_parse(env, "RULES_FILE", Path, d.rules_file),
        max_future_skew_s=_parse(env, "MAX_FUTURE_SKEW_S", int, d.max_future_skew_s),
        align_enabled=_parse(env, "ALIGN_ENABLED", boolean, d.align_enabled),
        align_slack_s=_parse(env, "ALIGN_SLACK_S", non_negative_float, d.align_slack_s),
        align_stall_s=_parse(env, "ALIGN_STALL_S", pos_float, d.align_stall_s),
        align_max_held=_parse(env, "ALIGN_MAX_HELD", pos_int, d.align_max_held),
        redis_cluster=_parse(env, "REDIS_CLUSTER", boolean, d.redis_cluster),
        data_dir=_parse(env, "DATA_DIR", Path, d.data_dir),
        dev_home=_parse(env, "DEV_HOME", Path, d.dev_home),
        dev_partitions=_parse(env, "DEV_PARTITIONS", pos_int, d.dev_partitions),
        log_level=_parse(env, "LOG_LEVEL", str.upper, d.log_level),
        actor=_parse(env, "ACTOR", str, _os_user(env) or d.actor),
        breaker_freeze_share=_parse(env, "BREAKER_FREEZE_SHARE", share, d.breaker_freeze_share),
        breaker_min_freezes=_parse(env, "BREAKER_MIN_FREEZES", pos_int, d.breaker_min_freezes),
        breaker_value_caps=_parse(env, "BREAKER_VALUE_CAPS", money_caps, d.breaker_value_caps),
        batch_delivery=_parse(env, "BATCH_DELIVERY", boolean, d.batch_delivery),
    )


def env_name(field: str, sub: str | None = None) -> str:
    """The variable of a Settings field (`sub`: a field of `topics` or of
    `kafka_security`). Settings' fields are the one list of settings:
    ENV_NAMES and `to_env` derive from them, and `from_env`, the deploy files
    and the documented table are tested against ENV_NAMES."""
    if field == "topics":
        return f"{PREFIX}TOPIC_{(sub or '').upper()}"
    if field == "kafka_security":
        return f"{PREFIX}KAFKA_{'SECURITY_PROTOCOL' if sub == 'protocol' else (sub or '').upper()}"
    return PREFIX + field.upper()


_NESTED: dict[str, Any] = {"topics": TopicNames, "kafka_security": KafkaSecurity}


def _env_names() -> frozenset[str]:
    names: set[str] = set()
    for f in dataclasses.fields(Settings):
        if f.name in _NESTED:
            names |= {env_name(f.name, sub.name) for sub in dataclasses.fields(_NESTED[f.name])}
        else:
            names.add(env_name(f.name))
    return frozenset(names)


ENV_NAMES: frozenset[str] = _env_names()
"""Every variable `from_env` reads (it, docker-compose, the Kubernetes manifest and
the documented table are tested against it)."""


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, StrEnum):
        return value.value
    return str(value)


def to_env(settings: Settings) -> dict[str, str]:
    """The FRAUD_* variables that rebuild `settings` with `from_env` (for
    worker subprocesses started by the demo, the bench and the tests).
    Contains secrets: hand it to a child process, never print it."""
    env: dict[str, str] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in _NESTED:
            for sub in dataclasses.fields(value):
                item = getattr(value, sub.name)
                if item is not None:
                    env[env_name(f.name, sub.name)] = _env_value(item)
        elif value is not None:
            env[env_name(f.name)] = _env_value(value)
    return env
