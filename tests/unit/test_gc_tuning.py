"""The worker's collector settings: start-up objects frozen, gen 0 less eager,
and cycles still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from stream.gc_tuning import GEN0_THRESHOLD, tune_for_streaming


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_start_up_objects_are_frozen_and_gen0_is_less_eager(restored_gc: None) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    built_at_start_up = [[i] for i in range(1_000)]  # tracked containers
    tune_for_streaming()
    assert gc.get_freeze_count() >= len(built_at_start_up)
    assert gc.get_threshold()[0] == GEN0_THRESHOLD


def test_cycles_made_after_tuning_are_still_collected(restored_gc: None) -> None:
    tune_for_streaming()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    probe = weakref.ref(a)
    del a, b
    # Allocations alone (no explicit collect) must trigger the collector, up
    # to generation 1 in case the cycle was promoted before it became garbage.
    live = [_Node() for _ in range(GEN0_THRESHOLD * 12)]
    assert probe() is None
    assert len(live) == GEN0_THRESHOLD * 12
