from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from devenv import postgres as devpostgres
from devenv import services as devservices
from tests.integration.services import (
    LocalCluster,
    Services,
    free_port,
    start_cluster,
    start_services,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    home = tmp_path_factory.mktemp("services")
    svc = start_services(Path(home))
    yield svc
    if svc.layout is not None:
        devservices.down(svc.layout)


@pytest.fixture
async def redis_client(services: Services) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(services.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_cluster(Path(tmp_path_factory.mktemp("cluster")))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def postgres_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real PostgreSQL (the local services' code, on a free port, data in a
    temporary directory), started by the first test that asks for it; each
    test module makes its own database on it."""
    layout = devservices.DevLayout(
        home=Path(tmp_path_factory.mktemp("postgres")), jar_cache=devservices.JAR_CACHE
    )
    port = free_port()
    devpostgres.start_postgres(layout, port, "postgres")
    yield port
    devpostgres.stop_postgres(layout)
