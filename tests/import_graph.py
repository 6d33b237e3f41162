"""The import graph of the ``sgdbench`` package, read with ``ast`` (nothing is imported).

Every import counts, function-level ones included; only ``if TYPE_CHECKING:`` blocks do not (they
never run). Run ``python -m tests.import_graph`` to print each module's layer (0: imports nothing
from the package; n: imports modules of layers below n only), or the cycles when there are some.
"""

from __future__ import annotations

import ast
import copy
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sgdbench"


@dataclass
class Module:
    name: str
    imports: set[str] = field(default_factory=set)  # package modules, at any level
    top_level: set[str] = field(default_factory=set)  # package modules imported when it loads
    external: set[str] = field(default_factory=set)  # other top-level packages, when it loads


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, in_function: bool = False):
    """(import node, inside a function) for every import that can run."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child):
            for orelse in child.orelse:
                yield from _walk(orelse, in_function)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from _walk(child, inner)


def graph() -> dict[str, Module]:
    """Every module of the package and what it imports (a copy: the caller may edit it)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    return copy.deepcopy(_graph(tuple((p, p.stat().st_mtime_ns) for p in paths)))


@functools.cache
def _graph(files: tuple[tuple[Path, int], ...]) -> dict[str, Module]:
    """The graph of these files (each with its modification time: an edit reads it again);
    parsed once per test session rather than once per test."""
    paths = [path for path, _ in files]
    names = {module_name(p) for p in paths}
    modules: dict[str, Module] = {}
    for path in paths:
        name = module_name(path)
        module = modules[name] = Module(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, in_function in _walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                # "from sgdbench import spec" imports a module; "from sgdbench import X" a name
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names
                ]
            for target in targets:
                if target.split(".")[0] != "sgdbench":
                    if not in_function:
                        module.external.add(target.split(".")[0])
                    continue
                while target not in names:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                if target != name:
                    module.imports.add(target)
                    if not in_function:
                        module.top_level.add(target)
    return modules


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (empty when the graph is acyclic)."""
    found, state = [], {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(modules[name].imports):
            if state.get(target) == "open":
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(modules):
        if name not in state:
            visit(name, [name])
    return found


def layers(modules: dict[str, Module]) -> dict[str, int]:
    """Each module's layer: 0 for modules that import none of the package, else one more than
    the highest layer it imports. Defined only for an acyclic graph."""
    out: dict[str, int] = {}

    def layer(name: str) -> int:
        if name not in out:
            out[name] = 1 + max((layer(t) for t in modules[name].imports), default=-1)
        return out[name]

    for name in modules:
        layer(name)
    return out


def closure(modules: dict[str, Module], start: str, *, top_level: bool = True) -> set[str]:
    """The package modules that importing ``start`` loads (``top_level``) or may ever load."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            edges = modules[name].top_level if top_level else modules[name].imports
            todo.extend(edges)
    return seen


def main() -> int:
    modules = graph()
    found = cycles(modules)
    if found:
        for cycle in found:
            print("cycle: " + " -> ".join(cycle))
        return 1
    for name, level in sorted(layers(modules).items(), key=lambda kv: (kv[1], kv[0])):
        below = ", ".join(sorted(m.removeprefix("sgdbench.") for m in modules[name].imports))
        print(f"{level:2d}  {name:32s} {below}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
