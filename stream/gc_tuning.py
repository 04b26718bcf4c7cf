"""Garbage-collector settings for the long-running, allocation-heavy commands
(worker, backtest, replay).

Every event allocates a few hundred short-lived containers (decoded
fields, requests, observations, evidence), so CPython's default gen-0
threshold of 700 runs a collection every few events, and each older
generation pass walks the whole heap of faust, aiokafka and the compiled
rule book, which never becomes garbage. With the settings below, what is
left of the collector's cost is small: turning collection off altogether
would save little more and would leak every reference cycle.
"""

from __future__ import annotations

import gc

__all__ = ["GEN0_THRESHOLD", "tune_for_streaming"]

# Allocations between gen-0 collections: about 30-50 events' worth.
GEN0_THRESHOLD = 10_000


def tune_for_streaming() -> None:
    """Move everything built at start-up out of the collector's sight (it
    lives as long as the process) and collect the young generation less
    often. Cycles made later are still collected. A frozen object that
    becomes garbage is never collected, so call this once everything
    long-lived is built, and `gc.unfreeze()` before rebuilding any of it
    (nothing is rebuilt today: a new rule set means a new process)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
