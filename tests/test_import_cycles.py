"""The `jaxattn` package has no import cycles: each module's module-level imports (read with
`ast`, never executed) form a graph without loops, so any module imports alone, in any order.

Counted: `import jaxattn.x`, `from jaxattn.x import y` (an edge to jaxattn.x.y when y is a module,
else to jaxattn.x) and relative imports, anywhere at module level (also under `if`/`try`); an
import of jaxattn.p.m also counts as one of the package jaxattn.p (its __init__ runs first), unless
the importer is inside jaxattn.p.
Not counted: imports inside functions or classes (deferred on purpose) and under
`if TYPE_CHECKING:` (never run).
"""

from __future__ import annotations

import ast
import os

from shared import ROOT


def _modules(package_dir: str) -> dict[str, str]:
    """{dotted module name: file} for every .py file of the package under `package_dir`."""
    base = os.path.dirname(package_dir)
    out = {}
    for dirpath, _, files in os.walk(package_dir):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                parts = os.path.relpath(path, base)[: -len(".py")].split(os.sep)
                if parts[-1] == "__init__":
                    parts.pop()
                out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module):
    """The Import/ImportFrom statements run when the module is imported: module level, also
    inside if/try/with blocks, but not in functions, classes or `if TYPE_CHECKING:` bodies."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            todo += node.orelse if _is_type_checking(node.test) else node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody
            todo += [stmt for handler in node.handlers for stmt in handler.body]
        elif isinstance(node, ast.With):
            todo += node.body


def import_graph(package_dir: str) -> dict[str, set[str]]:
    """{module: the package's modules it imports at module level} for the package in
    `package_dir` (e.g. ROOT/jaxattn)."""
    modules = _modules(package_dir)
    graph = {}
    for name, path in modules.items():
        is_package = path.endswith("__init__.py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        edges = set()
        for node in _module_level_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:  # relative: from the module's package, `level - 1` levels up
                    parts = name.split(".") if is_package else name.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    origin = ".".join(parts + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [
                    f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                    for alias in node.names
                ]
            for target in targets:  # and the packages above it, which Python imports first
                parts = target.split(".")
                edges |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        # ...but not the module's own packages: they are being imported already when it runs
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        graph[name] = {t for t in edges if t in modules} - own
    return graph


def components(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module, each sorted: the
    groups of modules that import each other, directly or around a loop (Tarjan, iterative)."""
    index, low, on_stack, stack, sccs = {}, {}, set(), [], []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    scc = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        scc.append(top)
                        if top == node:
                            break
                    if len(scc) > 1:
                        sccs.append(sorted(scc))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(sccs)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles, as [a, b, ..., a]: for each module of each component, a shortest
    cycle through it (breadth-first), without repeats; empty when the graph has none."""
    found, seen = [], set()
    for scc in components(graph):
        members = set(scc)
        for first in scc:
            paths, visited, cycle = [[first]], {first}, None
            while paths and cycle is None:
                path = paths.pop(0)
                for nxt in sorted(graph[path[-1]] & members):
                    if nxt == first:
                        cycle = path + [first]
                        break
                    if nxt not in visited:
                        visited.add(nxt)
                        paths.append(path + [nxt])
            start = cycle.index(min(cycle[:-1]))  # the same cycle from its least module
            key = tuple(cycle[start:-1] + cycle[:start])
            if key not in seen:
                seen.add(key)
                found.append([*key, key[0]])
    return found


def test_the_checker_finds_cycles_and_skips_deferred_imports(tmp_path):
    """A made-up package: a -> sub.b -> sub.c -> a at module level is a cycle, and so are
    e -> q (q/__init__ runs before q.r) -> q.s -> e and e -> q.r -> q.s -> e; imports in a
    function or under TYPE_CHECKING, and of a module's own package, are not."""
    pkg = tmp_path / "pkg"
    for folder in (pkg, pkg / "sub", pkg / "q"):
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("try:\n    from . import c\nexcept ImportError:\n    c = 0\n")
    (pkg / "sub" / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nimport pkg.a\n"
        "if TYPE_CHECKING:\n    from pkg import e\n"
        "def f():\n    from pkg import e\n"
    )
    (pkg / "e.py").write_text("import pkg.d\n")
    graph = import_graph(str(pkg))
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.sub.c"}
    assert graph["pkg.d"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]

    (pkg / "e.py").write_text("from pkg.q.r import x\n")
    (pkg / "q" / "__init__.py").write_text("from .s import y\n")
    (pkg / "q" / "r.py").write_text("from pkg.q import s\nx = 1\n")
    (pkg / "q" / "s.py").write_text("import pkg.e\ny = 1\n")
    graph = import_graph(str(pkg))
    assert graph["pkg.q.r"] == {"pkg.q.s"}
    assert components(graph) == [
        ["pkg.a", "pkg.sub.b", "pkg.sub.c"],
        ["pkg.e", "pkg.q", "pkg.q.r", "pkg.q.s"],
    ]
    assert cycles(graph) == [
        ["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"],
        ["pkg.e", "pkg.q", "pkg.q.s", "pkg.e"],
        ["pkg.e", "pkg.q.r", "pkg.q.s", "pkg.e"],
    ]


def test_jaxattn_has_no_import_cycles():
    """Every cycle among jaxattn's module-level imports, with the modules in it in import order
    (a -> b -> ... -> a): break one import of each (move the shared piece to the module that owns
    the concept, or make the import function-local with a comment saying why)."""
    graph = import_graph(os.path.join(ROOT, "jaxattn"))
    assert len(graph) > 30, sorted(graph)  # the walk found the package's modules
    found = cycles(graph)
    groups = [", ".join(scc) for scc in components(graph)]
    assert not found, (
        f"{len(found)} import cycle(s) in jaxattn, in {len(groups)} group(s) of modules that "
        "import each other:\n"
        + "\n".join(f"  group: {g}" for g in groups)
        + "\n"
        + "\n".join("  " + " -> ".join(c) for c in found)
    )
