"""The pipeline on the in-memory store (the same cases run on Redis in
tests/integration/test_pipeline_redis.py)."""

from __future__ import annotations

from tests.store_cases.pipeline import PipelineCases


class TestPipeline(PipelineCases):
    pass
