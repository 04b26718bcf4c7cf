"""Settings → the store: the one place that opens it (worker, replay,
backtest), so every command hashes keys and bounds windows alike."""

from __future__ import annotations

from detectors.errors import ConfigError
from stream.settings import Settings
from stream.store.base import StoreConfig
from stream.store.keys import KeyHasher
from stream.store.redis_store import RedisStore

__all__ = ["key_hasher", "open_store", "store_config"]


def store_config(settings: Settings) -> StoreConfig:
    return StoreConfig(
        dedup_horizon_ms=settings.dedup_horizon_s * 1000,
        lateness_ms=settings.allowed_lateness_s * 1000,
        counted_events=settings.counted_events,
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
