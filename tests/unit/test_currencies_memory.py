"""Two currencies on the in-memory store (the same cases run on Redis in
tests/integration/test_currencies_redis.py)."""

from __future__ import annotations

from tests.store_cases.currencies import CurrencyCases


class TestCurrencies(CurrencyCases):
    pass
