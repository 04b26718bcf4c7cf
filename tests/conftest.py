from __future__ import annotations

import os

import pytest
from hypothesis import settings

from tests.store_cases.backends import Backend, Stores, backend_for

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test asking for a store `backend` gets the one its directory allows:
    the in-memory store under tests/unit, Redis under tests/integration."""
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", [backend_for(metafunc.definition.path)], ids=str)


@pytest.fixture
def stores(backend: Backend, request: pytest.FixtureRequest) -> Stores:
    services = request.getfixturevalue("services") if backend is Backend.REDIS else None
    return Stores(backend, services)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        help="also run the long variants (marked `soak`), left out of the default suite "
        "to keep it within its time budget",
    )
    parser.addoption(
        "--screenshots",
        metavar="DIR",
        help="the console's end-to-end test also saves its pages as PNG files here "
        "(scripts/screenshots regenerates docs/console/ this way)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak variants are deselected, not skipped, unless --soak: the summary
    counts them apart, and nothing in the default run reports them as passed."""
    if config.getoption("--soak"):
        return
    soak = [item for item in items if item.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if not item.get_closest_marker("soak")]
