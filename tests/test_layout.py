"""The package's layout: no import cycles, the config at the bottom, the README's tree true to the folders."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rscaffold"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports, at any level of the file (lazy imports count too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_the_config_imports_no_stage():
    allowed = {"rscaffold.prompts", "rscaffold.signals", "rscaffold.schema", "rscaffold.testbed.phrasing"}
    graph = _graph()
    for name in [m for m in graph if m == "rscaffold.config" or m.startswith("rscaffold.config.")]:
        outside = {m for m in graph[name] if not m.startswith("rscaffold.config")}
        assert outside <= allowed, f"{name} imports {outside - allowed}"


def test_stages_import_the_run_folder_and_config_never_the_reverse():
    graph = _graph()
    assert graph["rscaffold.runs"] <= {"rscaffold.config", "rscaffold.schema"}


def test_the_readme_tree_names_every_package_file_and_folder():
    """Every module and folder of the package (and its sub-packages' modules) is named in the README's
    tree, and every name in the tree's first column exists."""
    tree = (ROOT / "README.md").read_text(encoding="utf-8").split("<!-- tree -->")[1]
    for path in sorted(PACKAGE.rglob("*")):
        rel = path.relative_to(PACKAGE)
        if "__pycache__" in rel.parts or path.name == "__init__.py" or len(rel.parts) > 2:
            continue
        if len(rel.parts) == 2 and (rel.parts[0] == "benchmarks" or not (path.suffix == ".py" or path.is_dir())):
            continue  # benchmarks/ holds one loader per dataset, named by the dataset
        name = path.name + ("/" if path.is_dir() else "")
        assert re.search(rf"(?<![\w.]){re.escape(name)}", tree), f"README tree lacks rscaffold/{rel}"
    first = re.findall(r"^  ?([\w.]+/?)\s{2,}", tree, re.MULTILINE)
    assert len(first) > 20
    for name in first:
        assert (PACKAGE / name).exists() or (ROOT / name).exists(), f"README tree names {name}, which is not there"
