"""Counted-event rings on Redis: aggregates.lua (the same cases run on the
in-memory store in tests/unit/test_counted_memory.py)."""

from __future__ import annotations

import pytest

from tests.store_cases.counted import CountedCases

pytestmark = pytest.mark.integration


class TestCounted(CountedCases):
    pass
