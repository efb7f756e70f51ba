"""The package's import structure: layers in one order, no import cycles, command modules imported by the CLI alone.

Every import counts, at module level or inside a function (and under ``if TYPE_CHECKING``): a cycle or an upward
import hidden in a function is still one. The README's "How it is built" lists the layers in this order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "memcontrol"
# Lowest first: a module may import from its own layer and the ones before it, never from a later one.
LAYERS = (
    "memcontrol",
    "errors",
    "io",
    "registry",
    "config",  # the root package's version, and what everything uses
    "data",
    "models",
    "runtime",
    "peft",
    "mitigations",
    "sampling",
    "scenario",
    "train",
    "metrics",
    "pretrain",
    "search",
    "pipeline",
    "benchmark",
    "cli",  # the commands: flags -> configs -> a library call -> what is printed
)
CLI = f"{PACKAGE}.cli"


def module_files(src: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``src`` (a package is its __init__)."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports(name: str, path: Path, modules: dict[str, Path], package: str) -> set[str]:
    """The modules of ``package`` that module ``name`` imports anywhere in its code."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in (or is)
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` the module mod
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t == package or t.startswith(f"{package}."))
    return found


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    modules = module_files(src, package)
    return {name: imports(name, path, modules, package) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module), each sorted (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str, package: str = PACKAGE) -> str:
    """The layer of a module: the root package itself, or the first name under it (``memcontrol.search.run``:
    search)."""
    return module.split(".")[1] if "." in module else package


def upward_imports(graph: dict[str, set[str]], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """Every import of a module from a later layer than its own, as ``importer -> imported``."""
    rank = {name: i for i, name in enumerate(layers)}
    return [
        f"{importer} -> {imported}"
        for importer, targets in sorted(graph.items())
        for imported in sorted(targets)
        if rank[layer(imported)] > rank[layer(importer)]
    ]


def command_module_imports(graph: dict[str, set[str]], cli: str = CLI) -> list[str]:
    """Every import of a command module (``memcontrol.cli.*``) from outside the CLI package."""
    inside = (cli, f"{cli}.")
    return [
        f"{importer} -> {imported}"
        for importer, targets in sorted(graph.items())
        for imported in sorted(targets)
        if imported.startswith(f"{cli}.") and not importer.startswith(inside)
    ]


def test_every_layer_is_placed():
    """A new package or top-level module gets a place in LAYERS rather than escaping the check."""
    graph = import_graph()
    assert not {layer(m) for m in graph} - set(LAYERS)
    assert len(graph) > 50  # the parse found the package


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_package_imports_a_later_layer():
    assert upward_imports(import_graph()) == []


def test_only_the_cli_imports_command_modules():
    graph = import_graph()
    assert {f"{CLI}.train", f"{CLI}.search"} <= graph[CLI]  # the commands are where this test looks for them
    assert command_module_imports(graph) == []


@pytest.fixture
def violating_package(tmp_path) -> Path:
    """A package with a cycle hidden in a function, an upward import and a command module imported by the library."""
    files = {
        "memcontrol/__init__.py": "",
        "memcontrol/data/__init__.py": "",
        "memcontrol/data/a.py": "def f():\n    from memcontrol.data import b\n",
        "memcontrol/data/b.py": "from . import a\nfrom memcontrol.train.run import x\n",
        "memcontrol/train/__init__.py": "",
        "memcontrol/train/run.py": "import memcontrol.cli.train\n",
        "memcontrol/cli/__init__.py": "from memcontrol.cli import train\n",
        "memcontrol/cli/train.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_checks_find_each_kind_of_violation(violating_package):
    graph = import_graph(violating_package)
    assert cycles(graph) == [["memcontrol.data.a", "memcontrol.data.b"]]
    assert upward_imports(graph, ("memcontrol", "data", "train", "cli")) == [
        "memcontrol.data.b -> memcontrol.train.run",
        "memcontrol.train.run -> memcontrol.cli.train",
    ]
    assert command_module_imports(graph) == ["memcontrol.train.run -> memcontrol.cli.train"]
