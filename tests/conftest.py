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
