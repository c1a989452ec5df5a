"""The import contract of docs/architecture.md, read from the source (nothing is imported).

Every import counts: module level, inside functions, and ``importlib.import_module("…")`` strings (an
f-string counts as an import of every module its constant prefix names). Only imports under
``if TYPE_CHECKING:`` are left out of the cycle check: they never run.
- no cycle among smmdn modules;
- Prefect and ``flows`` only in the faces: ``smmdn/commands/``, ``smmdn/demo/``, ``smmdn/cli.py``;
- ``smmdn.model`` never imports ``smmdn.store``;
- SQL only in ``smmdn.store``: sqlalchemy, psycopg and the table definitions are imported nowhere else;
- the ground floor (config, errors, schema, registry, timeutil, display, redact) imports nothing of smmdn above it;
- at most 8 modules at ``smmdn/``'s root, no Python file over 700 lines, every store handle typed ``Store``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GROUND = {"smmdn.config", "smmdn.errors", "smmdn.schema", "smmdn.registry", "smmdn.timeutil", "smmdn.display",
          "smmdn.redact"}
FACES = ("smmdn.commands", "smmdn.demo", "smmdn.cli")
RETIRED = ("anomalies", "alerting", "notify", "verification", "cycle.py", "champion", "forecast", "backtest",
           "metrics")


@dataclass
class Imports:
    """What one module imports: every name (``all``) and those that run (``runtime``: for cycles)."""

    all: set[str] = field(default_factory=set)
    runtime: set[str] = field(default_factory=set)


def module_names(package: Path) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under ``package`` (``__init__`` names the package)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str, path: Path, known: set[str]) -> Imports:
    """Resolved imports of one module: ``from a import b`` is ``a.b`` when that is a module, else ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = Imports()

    def add(target: str, node: ast.AST) -> None:
        out.all.add(target)
        if node.lineno not in typing_only:
            out.runtime.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in known else base, node)
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                add(arg.value, node)
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                prefix = str(arg.values[0].value)
                for module in known:
                    if module.startswith(prefix):
                        add(module, node)
    return out


def import_graph(package: Path) -> dict[str, Imports]:
    names = module_names(package)
    known = set(names)
    return {name: imports_of(name, path, known) for name, path in names.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, Imports]:
    return import_graph(ROOT / "smmdn")


def _under(module: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_no_import_cycle_among_smmdn_modules(graph: dict[str, Imports]) -> None:
    runtime = {m: {t for t in i.runtime if t.startswith("smmdn")} for m, i in graph.items()}
    assert cycles(runtime) == []


def test_no_import_cycle_even_through_type_checking_imports(graph: dict[str, Imports]) -> None:
    """Typing-only imports never run, but a cycle through them still ties the layers together (the store's
    parts type their handle with a protocol instead of importing the facade that imports them)."""
    every = {m: {t for t in i.all if t.startswith("smmdn")} for m, i in graph.items()}
    assert cycles(every) == []


def test_prefect_and_flows_only_in_the_faces(graph: dict[str, Imports]) -> None:
    offenders = sorted((m, t) for m, i in graph.items() if not _under(m, FACES)
                       for t in i.all if _under(t, ("prefect", "flows")))
    assert offenders == []


def test_model_never_imports_store(graph: dict[str, Imports]) -> None:
    offenders = sorted((m, t) for m, i in graph.items() if _under(m, ("smmdn.model",))
                       for t in i.all if _under(t, ("smmdn.store",)))
    assert offenders == []


def test_sql_only_in_the_store(graph: dict[str, Imports]) -> None:
    offenders = sorted((m, t) for m, i in graph.items() if not _under(m, ("smmdn.store",))
                       for t in i.all if _under(t, ("sqlalchemy", "smmdn.store.tables", "psycopg")))
    assert offenders == []


def test_ground_floor_imports_nothing_above_it(graph: dict[str, Imports]) -> None:
    offenders = sorted((m, t) for m in GROUND for t in graph[m].all
                       if t.startswith("smmdn") and not _under(t, GROUND))
    assert offenders == []


def test_no_shims_where_retired_modules_were() -> None:
    left = [name for name in RETIRED if (ROOT / "smmdn" / (name if name.endswith(".py") else f"{name}.py")).exists()]
    assert left == []


def test_the_checker_sees_hidden_cycles_and_forbidden_imports(tmp_path: Path) -> None:
    """A planted cycle through a function-level import and an importlib string is found; so is Prefect."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n    return b\n")
    (pkg / "sub" / "b.py").write_text("import importlib\n\ndef g():\n    return importlib.import_module('pkg.c')\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n"
                              "import prefect\nfrom . import a\n")
    (pkg / "d.py").write_text("from pkg import c\n")
    found = import_graph(pkg)
    runtime = {m: {t for t in i.runtime if t.startswith("pkg")} for m, i in found.items()}
    assert cycles(runtime) == [["pkg.a", "pkg.c", "pkg.sub.b"]]  # c → d is typing-only: no second cycle
    assert "prefect" in found["pkg.c"].all and "pkg.d" in found["pkg.c"].all - found["pkg.c"].runtime


def test_architecture_page_names_every_module() -> None:
    """docs/architecture.md has a line for each module of smmdn/ and flows/ (commands and demo by group)."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for path in sorted([*(ROOT / "smmdn").rglob("*.py"), *(ROOT / "flows").glob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py" and rel not in ("smmdn/model/__init__.py", "smmdn/store/__init__.py"):
            continue
        if rel.startswith("smmdn/store/migrations/"):
            continue  # the revisions, named by their folder
        if rel.startswith(("smmdn/commands/", "smmdn/demo/")):
            if f"`{path.stem}" not in page:
                missing.append(rel)
            continue
        if f"`{rel}`" not in page:
            missing.append(rel)
    assert missing == []


MAX_ROOT_MODULES = 8
MAX_LINES = 700


def test_at_most_eight_modules_at_the_package_root() -> None:
    """A new role gets a package of its own instead of piling up at ``smmdn/``'s root."""
    modules = sorted(p.name for p in (ROOT / "smmdn").glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= MAX_ROOT_MODULES, modules


def test_no_python_file_over_700_lines() -> None:
    """Small modules with one job each: a file past 700 lines holds more than one (split it)."""
    files = [p for top in ("smmdn", "flows", "tests", "scripts", "infra") for p in (ROOT / top).rglob("*.py")]
    long = {p.relative_to(ROOT).as_posix(): n for p in files
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_store_handles_are_typed() -> None:
    """A parameter holding the store is typed ``Store`` (under TYPE_CHECKING where an import would cycle), so
    a misspelt store call is a type error, not a runtime surprise."""
    loose = [f"{p.relative_to(ROOT).as_posix()}:{i}" for top in ("smmdn", "flows") for p in (ROOT / top).rglob("*.py")
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"\bstore: (Any|object)\b", line)]
    assert loose == []
