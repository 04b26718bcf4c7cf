"""Two worker processes on a 3-master Redis Cluster: the simulated multi-day
stream with cross-topic fraud, produced interleaved while both run, gives
the backtest's decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.simulation.publish import publish
from tests.integration.services import (
    LocalCluster,
    Services,
    WorkerProcess,
    create_topics,
    free_port,
    wait_caught_up,
    wait_ready,
)
from tests.integration.test_arrival_order import compare
from tests.integration.test_simulated_live import decisions_of, read_decisions, simulated_backtest

pytestmark = pytest.mark.integration


async def test_two_workers_on_a_redis_cluster_equal_the_backtest(
    services: Services, redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    result, _, backtest = await simulated_backtest(services, tmp_path, seed=3)
    settings = services.settings(redis_url=redis_cluster.url, redis_cluster=True)
    await create_topics(settings)
    workers = [
        WorkerProcess(settings.replace(web_port=free_port()), tmp_path / f"worker-{name}.log")
        for name in "ab"
    ]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            wait_ready(worker)
        await publish(settings, result.timeline)
        await wait_caught_up(workers[0], list(settings.topics.inputs().values()), timeout_s=240)
        assigned = [wait_ready(worker)["assigned_partitions"] for worker in workers]
    finally:
        for worker in workers:
            worker.stop()
    live = decisions_of(settings, await read_decisions(settings))
    compare(backtest, live, f"two workers on a Redis Cluster (partitions {assigned})")
    assert all(assigned), assigned
