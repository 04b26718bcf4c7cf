"""The worker's logging: the level asked for is the level debug calls pay for."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import faust
import pytest

from stream.faust_wiring import faust_worker

# A library logger with no level of its own (as aiokafka's are in a worker).
PROBE = "tests.worker_logging.library"


@pytest.fixture
def restored_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("level", ["WARNING", "ERROR", "INFO"])
def test_debug_calls_are_disabled_at_the_configured_level(
    level: str, restored_root_logger: None
) -> None:
    app = faust.App(
        "test-worker-logging",
        broker="kafka://127.0.0.1:1",
        web_enabled=False,
        worker_redirect_stdouts=False,
    )
    worker = faust_worker(app, level)
    worker._setup_logging()
    assert logging.getLogger().getEffectiveLevel() == logging.getLevelName(level)
    assert not logging.getLogger(PROBE).isEnabledFor(logging.DEBUG)


def test_faust_own_spinner_would_enable_debug(restored_root_logger: None) -> None:
    """Why faust_worker drops the spinner: faust's default turns debug on."""
    app = faust.App(
        "test-worker-logging-2",
        broker="kafka://127.0.0.1:1",
        web_enabled=False,
        worker_redirect_stdouts=False,
    )
    worker = faust.Worker(app, loglevel="warning")
    worker._setup_logging()
    assert logging.getLogger(PROBE).isEnabledFor(logging.DEBUG)
