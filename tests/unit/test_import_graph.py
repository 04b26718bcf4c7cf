"""Guards on the import graph, built statically from the source with `ast`:
no cycle among the product's modules, no product module importing the lab
(`bench`, `devenv`), and a pure `detectors` core that never touches I/O
libraries or the `stream` shell.

An import anywhere in a module counts (module level, inside a function, in
a try block); only `if TYPE_CHECKING:` blocks are left out, because they
never run: they are how a module names a type without importing it. Each
check is a small function tried first on a synthetic graph, so a check that
could never fail would show here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("console", "detectors", "stream")
LAB = ("bench", "devenv")
PURE_CORE_MUST_NOT_IMPORT = ("faust", "mode", "redis", "aiokafka", "hiredis", "prometheus_client")

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run: ast.walk without `if TYPE_CHECKING:` bodies
    (their `else:` still runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if _is_type_checking_block(node):
            assert isinstance(node, ast.If)
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """The dotted names `module` imports. `from a import b` gives `a.b`: a
    submodule, or a name defined in `a` (build_graph decides which exists)."""
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def build_graph(sources: Mapping[str, tuple[str, bool]]) -> Graph:
    """module -> the modules it imports: internal ones by their module name
    (the longest known prefix of each imported name), external ones by their
    top-level name. `sources`: module -> (source text, is a package)."""
    known = set(sources)
    graph: Graph = {}
    for module, (text, is_package) in sources.items():
        edges: set[str] = set()
        for name in imported_names(text, module, is_package):
            parts = name.split(".")
            internal = next(
                (
                    ".".join(parts[:n])
                    for n in range(len(parts), 0, -1)
                    if ".".join(parts[:n]) in known
                ),
                None,
            )
            edges.add(internal if internal is not None else parts[0])
        edges.discard(module)
        graph[module] = edges
    return graph


def repository_sources(packages: Iterable[str]) -> dict[str, tuple[str, bool]]:
    return {
        module_name(path, REPO): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for package in packages
        for path in sorted((REPO / package).rglob("*.py"))
    }


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def _within(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def forbidden_imports(
    graph: Mapping[str, set[str]], importers: Iterable[str], forbidden: Iterable[str]
) -> list[tuple[str, str]]:
    """(module, import) pairs where a module under `importers` imports
    anything under `forbidden`."""
    importers, forbidden = tuple(importers), tuple(forbidden)
    return sorted(
        (module, target)
        for module, targets in graph.items()
        if _within(module, importers)
        for target in targets
        if _within(target, forbidden)
    )


def _graph() -> Graph:
    return build_graph(repository_sources([*PRODUCT, *LAB]))


# ---------------------------------------------------------------- the checks


def test_no_cycle_among_the_product_modules() -> None:
    graph = _graph()
    product = {m: e for m, e in graph.items() if _within(m, PRODUCT)}
    cycle = find_cycle(product)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_cycle_through_the_lab_either() -> None:
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_product_never_imports_the_lab() -> None:
    assert forbidden_imports(_graph(), PRODUCT, LAB) == []


def test_the_worker_and_the_core_never_import_the_console() -> None:
    """The console is a process of its own on top of them."""
    assert forbidden_imports(_graph(), ["detectors", "stream"], ["console"]) == []


def test_the_core_imports_no_io_library_and_not_the_shell() -> None:
    offenders = forbidden_imports(_graph(), ["detectors"], [*PURE_CORE_MUST_NOT_IMPORT, "stream"])
    assert offenders == []


def test_the_graph_covers_every_package() -> None:
    """A guard over an empty or partial graph would pass for nothing."""
    graph = _graph()
    for package in (*PRODUCT, *LAB):
        modules = [m for m in graph if _within(m, [package])]
        assert len(modules) == len(list((REPO / package).rglob("*.py"))), package
    assert "stream.settings" in graph["stream.cli"]
    assert "stream.cli" in graph["console.cli"]
    assert "stream.topics" in graph["devenv.__main__"]


# ------------------------------------------------- the checks can fail


def test_find_cycle_names_the_modules_of_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c", "x"}, "c": {"a"}, "x": set(), "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"b", "c"}}) is None


def test_function_level_and_relative_imports_are_edges() -> None:
    sources = {
        "stream": ("", True),
        "stream.cli": ("def main():\n    from stream.demo import run\n", False),
        "stream.demo": ("from .cli import main\nimport faust\n", False),
        "stream.store": ("from . import keys\n", True),
        "stream.store.keys": ("from ..cli import main\n", False),
    }
    graph = build_graph(sources)
    assert graph["stream.cli"] == {"stream.demo"}
    assert graph["stream.demo"] == {"stream.cli", "faust"}
    assert graph["stream.store"] == {"stream.store.keys"}
    assert graph["stream.store.keys"] == {"stream.cli"}
    assert find_cycle(graph) == ["stream.cli", "stream.demo", "stream.cli"]


def test_only_type_checking_blocks_are_left_out() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from b import T\nelse:\n    import c\n"
        "try:\n    import d\nexcept ImportError:\n    import e\n"
    )
    assert imported_names(source, "a") == {"typing.TYPE_CHECKING", "c", "d", "e"}


def test_forbidden_imports_finds_the_core_reaching_for_io() -> None:
    graph = {
        "detectors.engine": {"detectors.rules", "redis"},
        "detectors.rules": {"stream.settings"},
        "stream.app": {"faust", "devenv.services"},
        "bench.live": {"stream.app"},
    }
    assert forbidden_imports(graph, ["detectors"], ["redis", "stream"]) == [
        ("detectors.engine", "redis"),
        ("detectors.rules", "stream.settings"),
    ]
    assert forbidden_imports(graph, PRODUCT, LAB) == [("stream.app", "devenv.services")]
    assert forbidden_imports({"streamer.x": {"benchmark"}}, ["stream"], ["bench"]) == []
