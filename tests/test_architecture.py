"""The shape of the code: imports point down, the documented error tree is the real one."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import token_stores
import wiser_async
from wiser_async import errors

PACKAGES = (Path(wiser_async.__file__).parent, Path(token_stores.__file__).parent)


def modules() -> Iterator[tuple[str, Path]]:
    for root in PACKAGES:
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def import_time_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """`node` and what it holds, function bodies aside (they run when called)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from import_time_nodes(child)


def runtime_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The library modules `name` imports when it is imported (TYPE_CHECKING blocks aside)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in import_time_nodes(node):
            if isinstance(inner, ast.Import):
                found.update(alias.name for alias in inner.names)
            elif isinstance(inner, ast.ImportFrom):
                base = inner.module or ""
                if inner.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - inner.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in inner.names:
                    # A submodule named in the import is imported itself; any other
                    # name is read from `base`, which must then be imported already.
                    submodule = f"{base}.{alias.name}"
                    found.add(submodule if submodule in known else base)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    paths = dict(modules())
    known = set(paths)
    return {name: runtime_imports(name, path, known) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_library_module_imports_back_up_at_import_time() -> None:
    graph = import_graph()
    assert len(graph) > 30  # the walk found the library
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_auth_imports_neither_the_client_nor_the_oauth_flow() -> None:
    # httpx2's _auth imports only models and exceptions; ours likewise.
    imported = import_graph()["wiser_async._auth"]
    assert "wiser_async._client" not in imported
    assert "wiser_async._oauth" not in imported


def test_no_library_module_is_longer_than_a_newcomer_can_hold() -> None:
    long = {
        name: lines
        for name, path in modules()
        if (lines := len(path.read_text().splitlines())) > 450
    }
    assert long == {}


TREE_NAMES = {
    name
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, errors.WiserError)
}
_TREE_LINE = re.compile(r"^    ((?:[│ ]   )*)([├└]── )?([A-Z]\w+)\b")


def drawn_tree() -> dict[str, str | None]:
    """Class -> parent, as the errors module's docstring draws it (the block after ``::``)."""
    block = (errors.__doc__ or "").split("::", 1)[1].strip("\n").split("\n\n", 1)[0]
    parents: dict[str, str | None] = {}
    trail: list[str] = []
    for line in block.splitlines():
        match = _TREE_LINE.match(line)
        assert match is not None, line
        depth = len(match.group(1)) // 4 + (1 if match.group(2) else 0)
        del trail[depth:]
        parents[match.group(3)] = trail[-1] if trail else None
        trail.append(match.group(3))
    return parents


def test_the_drawn_error_tree_is_the_class_tree() -> None:
    drawn = drawn_tree()
    assert set(drawn) == TREE_NAMES
    for name, parent in drawn.items():
        cls = getattr(errors, name)
        if parent is None:
            assert cls is errors.WiserError
        else:
            assert getattr(errors, parent) in cls.__bases__, name


@pytest.mark.parametrize("name", sorted(TREE_NAMES))
def test_every_error_class_names_its_failure_kind(name: str) -> None:
    kind = getattr(errors, name).kind
    assert isinstance(kind, str)
    assert kind
