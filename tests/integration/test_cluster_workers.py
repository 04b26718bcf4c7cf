"""Two worker processes on a 3-master Redis Cluster: the simulated multi-day
stream with cross-topic fraud gives the backtest's decisions, produced
while both run or produced first and caught up as a backlog by both at
their own speed (users, devices and cards span both workers' partitions:
each bounds its event-time merge by the other's published frontiers)."""

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
from tests.integration.test_simulated_live import (
    decisions_of,
    read_decisions,
    simulated_backtest,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "backlog",
    [pytest.param(False, marks=pytest.mark.soak), True],
    ids=["while-running", "as-a-backlog"],
)
async def test_two_workers_on_a_redis_cluster_equal_the_backtest(
    services: Services, redis_cluster: LocalCluster, tmp_path: Path, backlog: bool
) -> None:
    # Half the single worker's scale: the same scenarios (cross-topic fraud
    # whose entities span both workers' partitions) in half the events.
    result, _, backtest = await simulated_backtest(services, tmp_path, seed=3, scale=0.1)
    assert sum(len(ids) for ids in backtest.values()) > 10  # decisions to compare
    settings = services.settings(redis_url=redis_cluster.url, redis_cluster=True)
    await create_topics(settings)
    if backlog:
        await publish(settings, result.timeline)
    workers = [
        WorkerProcess(settings.replace(web_port=free_port()), tmp_path / f"worker-{name}.log")
        for name in "ab"
    ]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            wait_ready(worker)
        if not backlog:
            await publish(settings, result.timeline)
        await wait_caught_up(workers[0], list(settings.topics.inputs().values()), timeout_s=240)
        assigned = [wait_ready(worker)["assigned_partitions"] for worker in workers]
    finally:
        for worker in workers:
            worker.stop()
    live = decisions_of(settings, await read_decisions(settings))
    assert all(assigned), assigned
    compare(backtest, live, f"two workers on a Redis Cluster (partitions {assigned})")
