"""The faust floor of `python -m bench live`: a faust worker configured like
fraudstream's (same app settings, one raw-bytes agent per input topic,
`take_events` with the same batch limits, concurrency 1) whose agents do
nothing but let their batches be acknowledged. `floor-batch` is the same
with batch delivery (stream.batch_delivery): partition batches of raw
messages, acked in bulk.

It answers a question the aiokafka pass-through cannot: how much of a
worker's time per event is faust's own dispatch (fetcher thread, conductor,
channels, streams, acks), which no work in the pipeline can win back.
Run by the bench as `python -m bench floor N` (a subprocess); prints one JSON line
once N records have gone through, then idles until it is terminated.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, cast

import faust
import orjson

from stream.batch_delivery import BatchConsumer
from stream.faust_wiring import faust_app, faust_worker
from stream.gc_tuning import tune_for_streaming
from stream.settings import Settings


class ThroughputSpan:
    """Wall and CPU time from the first batch to the N-th record. The first
    batch is left out: its wait for the consumer group is not throughput."""

    def __init__(
        self,
        target: int,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.target = target
        self._clock, self._cpu_clock = clock, cpu_clock
        self.seen = 0
        self.first_batch = 0
        self.wall0 = 0.0
        self.cpu0 = 0.0
        self.report: dict[str, float] | None = None  # set once the target is reached

    def add(self, n: int) -> None:
        if not self.seen:
            self.first_batch, self.wall0, self.cpu0 = n, self._clock(), self._cpu_clock()
        self.seen += n
        if self.seen >= self.target and self.report is None:
            counted = max(self.seen - self.first_batch, 1)
            wall = max(self._clock() - self.wall0, 1e-9)
            cpu = self._cpu_clock() - self.cpu0
            self.report = {"eps": counted / wall, "cpu_s_per_1k_events": 1000 * cpu / counted}

    def print_report(self) -> None:
        """The one JSON line the bench reads from stdout."""
        if self.report is not None:
            sys.stdout.write(orjson.dumps(self.report).decode() + "\n")
            sys.stdout.flush()


def floor_app(settings: Settings, target: int, batches: bool = False) -> faust.App:
    """`batches`: the agents receive partition batches of raw messages and ack
    them in bulk (stream.batch_delivery); else faust's `take_events`."""
    # No web server: the worker that runs next binds the same port.
    suffix = "-floor-batch" if batches else "-floor"
    run = settings.replace(app_id=settings.app_id + suffix, batch_delivery=batches)
    app = faust_app(run, web_enabled=False)
    if batches:
        # Fetches of at most batch_max records, the size of take_events'
        # batches: both floors then pay their per-batch costs as often (else
        # the first fetch carries most of the pre-loaded records, and the
        # span, which leaves the first batch out, measures next to nothing).
        app.conf.broker_max_poll_records = settings.batch_max
    span = ThroughputSpan(target)

    def count(n: int) -> None:
        done = span.report is not None
        span.add(n)
        if not done and span.report is not None:
            span.print_report()  # then idle until the bench stops this process

    async def take_events(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
            count(len(events))

    async def take_batches(stream: Any) -> None:
        consumer = cast(BatchConsumer, app.consumer)
        async for messages in stream:
            if consumer.track(messages):
                consumer.ack_batch(messages)
                count(len(messages))

    for topic, name in settings.topics.inputs().items():
        channel = app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )
        consume = take_batches if batches else take_events
        app.agent(channel, name=f"floor-{topic.value}", concurrency=1)(consume)
    return app


def run(settings: Settings, target: int, batches: bool = False) -> None:
    app = floor_app(settings, target, batches)
    tune_for_streaming()  # as the worker does: the floor is faust in the worker's runtime
    faust_worker(app, settings.log_level).execute_from_commandline()
