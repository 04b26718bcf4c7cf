"""The store backends the shared cases run against, and scratch stores on them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from stream.settings import Settings
from stream.store.base import EventStore, StoreConfig
from stream.store.freezes import FreezeBook, MemoryFreezeBook
from stream.store.memory_store import MemoryStore
from stream.store.redis_freezes import RedisFreezeBook
from stream.store.redis_store import RedisStore
from stream.store_wiring import open_store, store_config
from tests.integration.services import TEST_KEY_HASH_SECRET, Services


class Backend(StrEnum):
    MEMORY = "memory"
    REDIS = "redis"


def backend_for(path: Path) -> Backend:
    """Tests under tests/integration may start services; the rest must not."""
    return Backend.REDIS if "integration" in path.parts else Backend.MEMORY


class Stores:
    """Settings and fresh, empty stores on one backend."""

    def __init__(self, backend: Backend, services: Services | None) -> None:
        self.backend = backend
        self._services = services

    def settings(self, **overrides: Any) -> Settings:
        if self._services is not None:
            return self._services.settings(**overrides)
        base = Settings(
            redis_namespace=f"t{uuid.uuid4().hex[:8]}", key_hash_secret=TEST_KEY_HASH_SECRET
        )
        return base.replace(**overrides)

    @asynccontextmanager
    async def scratch(
        self, settings: Settings, config: StoreConfig | None = None
    ) -> AsyncIterator[EventStore]:
        """A started store in the settings' own namespace, removed afterwards."""
        config = config or store_config(settings)
        if self.backend is Backend.MEMORY:
            yield MemoryStore(config)
            return
        store = open_store(settings, config=config)
        await store.start()
        try:
            yield store
        finally:
            await store.drop_namespace()
            await store.close()


@asynccontextmanager
async def scratch_freeze_book(stores: Stores) -> AsyncIterator[FreezeBook]:
    """An empty book of active freezes on the backend, removed afterwards."""
    if stores.backend is Backend.MEMORY:
        yield MemoryFreezeBook()
        return
    async with stores.scratch(stores.settings()) as store:
        assert isinstance(store, RedisStore)
        yield RedisFreezeBook(store.client, store.namespace)
