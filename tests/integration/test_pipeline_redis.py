"""The pipeline on Redis (the same cases run on the in-memory store in
tests/unit/test_pipeline_memory.py)."""

from __future__ import annotations

from tests.store_cases.pipeline import PipelineCases


class TestPipeline(PipelineCases):
    pass
