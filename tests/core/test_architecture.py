"""The layering holds: the import graph of core and console has no cycle, the import-linter
contracts in pyproject.toml are kept, and they fail when a module imports upward."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph.modules:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_import_graph_of_core_and_console_has_no_cycle() -> None:
    graph = grimp.build_graph("core", "console")
    # A package's __init__ is a module of its own: the graph counts `import core.x` from it too.
    assert len(graph.modules) > 100
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.build_graph("core")
    graph.add_import(importer="core.model.units", imported="core.engine.facade")
    assert any("core.model.units" in group for group in _cycles(graph))


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contracts_are_kept() -> None:
    run = _lint(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "core/model/units.py",
            "from core.engine import facade as _upward",
            "core is layered",
        ),
        ("core/engine/ledger.py", "import PySide6 as _qt", "core never imports the console or Qt"),
        ("console/widgets/events.py", "from core.store import store as _store", "views never"),
    ],
)
def test_an_upward_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    for package in ("core", "console", "assets"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / module).open("a", encoding="utf-8") as handle:
        handle.write(f"\n{line}  # noqa\n")
    run = _lint(tmp_path)
    assert run.returncode != 0
    broken = run.stdout.split("Broken contracts", 1)[1]
    assert contract in broken
    assert module.removesuffix(".py").replace("/", ".") in broken


def plain_unique_calls(source: str) -> list[str]:
    """Calls of numpy's `unique` for its values alone (no inverse, index, counts or axis)."""
    found = []
    for match in re.finditer(
        r"\b(?:np|numpy)\.unique\(|\bfrom numpy import [^\n]*\bunique\b", source
    ):
        if match.group(0).startswith("from"):
            found.append(match.group(0))
            continue
        depth, end = 1, match.end()
        while depth and end < len(source):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            end += 1
        call = source[match.start() : end]
        if not re.search(r"\b(?:return_index|return_inverse|return_counts|axis)\s*=", call):
            found.append(call)
    return found


def test_distinct_values_are_taken_one_way() -> None:
    """`core.model.arrays.distinct`, not `np.unique`: its hashing holds the interpreter lock for
    ~50 ms at 1M keys, a frozen console while the engine runs (docs/architecture.md)."""
    found = {
        str(path.relative_to(ROOT)): calls
        for package in ("core", "console")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ROOT / "core/model/arrays.py"  # its docstring names what it replaces
        and (calls := plain_unique_calls(path.read_text()))
    }
    assert found == {}
    assert plain_unique_calls("a = np.unique(x[y > 0])") == ["np.unique(x[y > 0])"]
    assert plain_unique_calls("np.unique(np.concatenate((a, b)))") == [
        "np.unique(np.concatenate((a, b)))"
    ]
    assert plain_unique_calls("numpy.unique(f(g(h)))") == ["numpy.unique(f(g(h)))"]
    assert plain_unique_calls("from numpy import sort, unique") == [
        "from numpy import sort, unique"
    ]
    assert plain_unique_calls("a, b = np.unique(np.stack((k, u)), return_inverse=True)") == []
