"""The import graph of ``medsight`` has no cycles, except the registry pattern.

Every ``import`` counts, at module level or inside a function (a lazy import is still a
dependency). The graph is read from the source (AST), so the test needs nothing installed and
sees imports that a run would not reach. A registry module importing the modules that
register themselves with it (readers with ``io.registry``, architectures with
``models.registry``, tasks with ``tasks.base``) is the one allowed kind of cycle; those edges
are named in ``REGISTRY_EDGES``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import medsight

ROOT = Path(medsight.__file__).parent

#: The registry pattern: a registry imports the modules that register themselves in it.
REGISTRY_EDGES = {
    ("medsight.io.registry", "medsight.io.archive"),
    ("medsight.io.registry", "medsight.io.dicom"),
    ("medsight.io.registry", "medsight.io.metaimage"),
    ("medsight.io.registry", "medsight.io.nifti"),
    ("medsight.io.registry", "medsight.io.numpy_io"),
    ("medsight.io.registry", "medsight.io.raster"),
    ("medsight.io.registry", "medsight.io.series"),
    ("medsight.models.registry", "medsight.models.architectures"),
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the medsight modules it imports (anywhere in its body)."""
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}

    def known(name: str) -> str:
        while name not in files and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files]
                # `from pkg import submodule` depends on the submodule, not on pkg's __init__
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            else:
                continue
            for t in targets:
                if t == "medsight" or t.startswith("medsight."):
                    t = known(t)
                    if t != mod:
                        graph[mod].add(t)
    return graph


def package_of(module: str) -> str:
    """``medsight.tasks.base`` → ``medsight.tasks``; top-level modules are their own node."""
    return ".".join(module.split(".")[:2])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _without_registry(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in ts if (m, t) not in REGISTRY_EDGES} for m, ts in graph.items()}


def test_no_import_cycle_among_modules_except_the_registries():
    cycle = find_cycle(_without_registry(import_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_among_packages():
    packages: dict[str, set[str]] = {}
    for mod, targets in _without_registry(import_graph()).items():
        packages.setdefault(package_of(mod), set()).update(package_of(t) for t in targets
                                                           if package_of(t) != package_of(mod))
    cycle = find_cycle(packages)
    assert cycle is None, "package import cycle: " + " -> ".join(cycle)


def test_every_allowed_registry_edge_exists():
    """The allow-list names real imports only, so it cannot grow stale and hide a new cycle."""
    graph = import_graph()
    assert {(m, t) for m, t in REGISTRY_EDGES if t not in graph.get(m, set())} == set()


def test_the_cycle_finder_finds_a_lazy_import_cycle(tmp_path):
    pkg = tmp_path / "medsight"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("from medsight.a.y import f\n")
    (pkg / "a" / "y.py").write_text("def f():\n    from . import x\n")
    (pkg / "b.py").write_text("import medsight.a.x\n")
    graph = import_graph(pkg)
    assert graph["medsight.a.y"] == {"medsight.a.x"} and graph["medsight.b"] == {"medsight.a.x"}
    assert find_cycle(graph) == ["medsight.a.x", "medsight.a.y", "medsight.a.x"]


def test_only_the_service_and_the_cli_import_the_service():
    """Domain rules the service uses (policy, trend, ...) live in library packages."""
    graph = import_graph()
    outside = {m: sorted(t for t in ts if package_of(t) == "medsight.service") for m, ts in graph.items()
               if package_of(m) not in ("medsight.service", "medsight.cli")}
    assert {m: ts for m, ts in outside.items() if ts} == {}


def test_no_package_imports_a_private_name_of_another():
    """A name that starts with ``_`` is its package's own business (explain/cam.py once took
    the classification task's ``_preprocessor``)."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        mod = _module_name(path, ROOT)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("medsight."):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private and package_of(node.module) != package_of(mod):
                    found.append(f"{mod}: from {node.module} import {', '.join(private)}")
    assert found == []


def test_the_saved_model_format_depends_on_neither_the_engine_nor_the_tasks():
    """``models/`` (the manifest, weights, the backend seam) is below the engine and the tasks,
    so a new backend or task never needs it to import them."""
    graph = import_graph()
    above = {"medsight.engine", "medsight.tasks", "medsight.service", "medsight.api", "medsight.cli"}
    found = {m: sorted(t for t in ts if package_of(t) in above) for m, ts in graph.items()
             if package_of(m) == "medsight.models"}
    assert {m: ts for m, ts in found.items() if ts} == {}
