"""Every module of the product (the pure core and the shell) says what it
offers (`__all__`), and what other modules import from it is among that
(tests may also reach a private helper they test directly)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import console
import detectors
import stream

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(
    m.name
    for package in (console, detectors, stream)
    for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
)


def test_every_core_module_declares_its_public_names() -> None:
    for name in MODULES:
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{name} has no __all__"
        missing = [n for n in exported if not hasattr(module, n)]
        assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def test_what_is_imported_from_the_core_is_public() -> None:
    offered = {name: set(importlib.import_module(name).__all__) for name in MODULES}
    private = []
    for path in sorted(REPO.rglob("*.py")):
        if any(part.startswith(".") for part in path.relative_to(REPO).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module in offered:
                private += [
                    f"{path.relative_to(REPO)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name not in offered[node.module]
                    and not (a.name.startswith("_") and path.parts[len(REPO.parts)] == "tests")
                    and f"{node.module}.{a.name}" not in offered
                ]
    assert not private, "\n".join(private)
