"""Import layering of ``src/itemrec``: no import cycles, the library never imports the CLI, and no
private framework modules (``keras.src``, ``tensorflow.python``).

Every ``import`` counts, at module level or inside a function (a lazy import still closes a cycle
at run time); imports under ``if TYPE_CHECKING:`` do not run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "itemrec"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, package: str) -> list[str]:
    """Absolute names imported anywhere in ``tree`` except under ``if TYPE_CHECKING:``."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.append(base)
            found.extend(f"{base}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    external: dict[str, list[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target in _imports(ast.parse(path.read_text(), str(path)), package):
            if not target.startswith("itemrec"):
                external.setdefault(name, []).append(target)
                continue
            while target and target not in modules:  # `from itemrec.x import func` -> module itemrec.x
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph, external


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan 1972), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    # a -> b -> c -> a is one component; d -> a is not part of it
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import itemrec.x\n"
                     "def f():\n    from .y import z\n")
    assert _imports(tree, "itemrec.pkg") == ["typing", "typing.TYPE_CHECKING", "itemrec.pkg.y", "itemrec.pkg.y.z"]


def test_no_import_cycles():
    graph, _ = _graph()
    assert len(graph) > 50  # the whole package was read
    assert _cycles(graph) == []


def test_the_library_does_not_import_the_cli():
    graph, _ = _graph()
    offenders = sorted((m, t) for m, targets in graph.items() for t in targets
                       if t.startswith("itemrec.cli") and not m.startswith("itemrec.cli") and m != "itemrec.__main__")
    assert offenders == []


def test_no_private_framework_imports():
    _, external = _graph()
    private = sorted((m, t) for m, targets in external.items() for t in targets
                     if t.startswith(("keras.src", "tensorflow.python")))
    assert private == []
    assert external  # the walk saw third-party imports at all
