"""Nothing outside ``src/medsight/tasks/`` asks a result what it is.

An AST lint over the package: outside ``tasks/`` no code may

* call ``hasattr`` / ``getattr`` with the name of a result field (``mask``, ``probabilities``,
  ``error_type``...),
* read a result-kind key (``"probabilities"``, ``"volumes_ml"``, ``"mask"``...) from a dict
  (``d["k"]``, ``d.get("k")``, ``"k" in d``),
* compare anything with a task's name (``model.task == "segmentation"``).

Results have methods (``to_dict``, ``findings``, ``artifacts``, ``summary``...) and writers
registered by type (``medsight.tasks.writers``) for that. The few legitimate uses elsewhere are
listed in ALLOWED, each with its reason; an entry that no longer matches anything fails too,
so the list stays as narrow as the code.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from medsight.tasks import results as results_module
from medsight.tasks.base import list_tasks

PACKAGE = Path(results_module.__file__).resolve().parents[1]

RESULT_FIELDS = {f.name for cls in (results_module.ClassificationResult, results_module.SegmentationResult,
                                    results_module.PredictionError) for f in dataclasses.fields(cls)} - {"input"}
KIND_KEYS = {"probabilities", "volumes_ml", "mask", "error_type", "findings"}

#: (file relative to src/medsight, enclosing function, rule, string) → why it is not a result-kind test.
ALLOWED: dict[tuple[str, str, str, str], str] = {
    ("config.py", "_task_of", "attr", "task"): "reads a run config's task (its discriminator), not a result's",
    ("service/result_store.py", "ResultStore._alerts_and_policy", "key", "probabilities"):
        "the treatment policy names the positive class from the stored probabilities",
    ("service/result_store.py", "ResultStore._row", "key", "mask"): "records where the stored mask file is",
    ("service/result_store.py", "measurements", "key", "findings"): "results stored before the findings table",
    ("service/result_store.py", "measurements", "key", "volumes_ml"): "results stored before the findings table",
    ("service/results_out.py", "_legacy_findings", "key", "findings"): "results stored before the findings table",
    ("service/results_out.py", "_legacy_findings", "key", "probabilities"): "results stored before the findings "
                                                                            "table",
    ("service/results_out.py", "_legacy_findings", "key", "volumes_ml"): "results stored before the findings table",
    ("service/results_out.py", "_seg", "key", "mask"): "reads the stored mask file",
    ("service/results_out.py", "build_outputs", "key", "mask"): "a stored mask file is sent as a SEG",
    ("service/results_out.py", "source_sop_uids", "key", "mask"): "the stored mask's source instances",
    ("service/api_query.py", "result_dict", "key", "mask"): "shows the stored mask by URL, hiding its path",
    ("service/api_query.py", "mask_file", "key", "mask"): "serves the stored mask file",
    ("service/response.py", "ResponseAssessor._segmented", "key", "mask"): "reads where the segmentation model's "
                                                                          "stored mask file is",
}


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _enclosing_functions(tree: ast.AST) -> dict[ast.AST, str]:
    """Each node → the name of the function it is in (``Class.method``; ``<module>`` outside any)."""
    where: dict[ast.AST, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = name
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = child.name if name == "<module>" else f"{name}.{child.name}"
            where[child] = inner
            visit(child, inner)

    visit(tree, "<module>")
    return where


def violations_in(source: str, tasks: set[str]) -> list[tuple[str, str, str, int]]:
    """(function, rule, string, line) of every result-kind test in ``source``."""
    tree = ast.parse(source)
    where = _enclosing_functions(tree)
    found = []

    def add(node: ast.AST, rule: str, name: str) -> None:
        found.append((where.get(node, "<module>"), rule, name, node.lineno))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr"):
            name = _string(node.args[1]) if len(node.args) > 1 else None
            if name in RESULT_FIELDS:
                add(node, "attr", name)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            key = _string(node.args[0]) if node.args else None
            if key in KIND_KEYS:
                add(node, "key", key)
        elif isinstance(node, ast.Subscript):
            key = _string(node.slice)
            if key in KIND_KEYS:
                add(node, "key", key)
        elif isinstance(node, ast.Compare):
            for op, left, right in zip(node.ops, [node.left, *node.comparators], node.comparators):
                a, b = _string(left), _string(right)
                if isinstance(op, (ast.In, ast.NotIn)) and a in KIND_KEYS:
                    add(node, "key", a)
                elif isinstance(op, (ast.Eq, ast.NotEq)) and (a in tasks or b in tasks):
                    add(node, "task-name", a if a in tasks else b)
                elif isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, (ast.Tuple, ast.List, ast.Set)):
                    for n in sorted({_string(e) for e in right.elts} & tasks):
                        add(node, "task-name", n)
    return found


def _package_violations() -> dict[tuple[str, str, str, str], list[int]]:
    tasks = set(list_tasks())
    out: dict[tuple[str, str, str, str], list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("tasks/"):
            continue
        for func, rule, name, line in violations_in(path.read_text(), tasks):
            out.setdefault((rel, func, rule, name), []).append(line)
    return out


def test_no_code_outside_tasks_asks_a_result_what_it_is():
    found = _package_violations()
    unexplained = {f"{k[0]}:{lines[0]} ({k[1]}) {k[2]} {k[3]!r}" for k, lines in found.items() if k not in ALLOWED}
    assert not unexplained, ("give the result a method or register a writer for its type "
                             f"(medsight.tasks.writers) instead of: {sorted(unexplained)}")


def test_every_allowed_use_still_exists_so_the_list_stays_narrow():
    stale = set(ALLOWED) - set(_package_violations())
    assert not stale, f"remove these ALLOWED entries, nothing matches them any more: {sorted(stale)}"


def test_the_lint_catches_the_old_ways_of_asking():
    old = '''
if hasattr(pred, "error_type"):
    pass
m = getattr(pred, "mask", None)
if "probabilities" in row:
    probs = row["probabilities"]
vols = row.get("volumes_ml")
door = Segmenter() if model.task == "segmentation" else Classifier()
if task in ("classification",):
    pass
'''
    rules = {(rule, name) for _, rule, name, _ in violations_in(old, {"classification", "segmentation"})}
    assert rules == {("attr", "error_type"), ("attr", "mask"), ("key", "probabilities"), ("key", "volumes_ml"),
                     ("task-name", "segmentation"), ("task-name", "classification")}
