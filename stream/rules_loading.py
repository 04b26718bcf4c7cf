"""Build the rule book and the store from Settings (shared by worker and backtest)."""

from __future__ import annotations

from importlib import resources

from detectors.errors import ConfigError
from detectors.rulebook import Rulebook, parse_rulebook
from stream.settings import Settings
from stream.store.base import StoreConfig
from stream.store.keys import KeyHasher
from stream.store.redis_store import RedisStore

DEFAULT_RULES = "default.yaml"


def read_rules_text(settings: Settings) -> tuple[str, str]:
    """(text, source name) of the configured rule file, or of the built-in default."""
    if settings.rules_file is None:
        text = resources.files("stream.rulesets").joinpath(DEFAULT_RULES).read_text("utf-8")
        return text, f"(built-in) {DEFAULT_RULES}"
    try:
        return settings.rules_file.read_text(encoding="utf-8"), str(settings.rules_file)
    except OSError as exc:
        raise ConfigError("FRAUD_RULES_FILE", f"cannot read {settings.rules_file}: {exc}") from None


def load_rulebook(settings: Settings) -> Rulebook:
    """Raises RulebookError listing every mistake: a worker never starts on a bad file."""
    text, source = read_rules_text(settings)
    return parse_rulebook(text, source)


def store_config(settings: Settings) -> StoreConfig:
    return StoreConfig(
        dedup_horizon_ms=settings.dedup_horizon_s * 1000,
        lateness_ms=settings.allowed_lateness_s * 1000,
    )


def key_hasher(settings: Settings) -> KeyHasher:
    """The keyed hash of ids in Redis keys. Without a secret there is no
    store: a default secret would make the hashes reversible by anyone who
    knows the default, and a random one would orphan the state at every start."""
    if settings.key_hash_secret is None:
        raise ConfigError(
            "FRAUD_KEY_HASH_SECRET",
            "required: a random secret of at least 32 characters (e.g. `openssl rand "
            "-base64 32`), the same for every worker and for `replay`",
        )
    return KeyHasher(settings.key_hash_secret.encode())


def open_store(
    settings: Settings, namespace: str | None = None, config: StoreConfig | None = None
) -> RedisStore:
    return RedisStore.from_url(
        settings.redis_url,
        namespace or settings.redis_namespace,
        settings.redis_timeout_s,
        config or store_config(settings),
        cluster=settings.redis_cluster,
        hasher=key_hasher(settings),
    )
