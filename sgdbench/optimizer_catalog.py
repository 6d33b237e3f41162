"""``torch.optim``'s optimizer classes and their keyword defaults, read from torch's source
without importing torch (4 s of CPU on a loaded machine), for ``sgdbench list optimizers``.

Only classes that ``torch/optim/__init__.py`` imports by name and whose ``__init__`` defaults
are plain literals are read; anything else makes ``keyword_defaults`` return None, and the
caller asks torch itself (``sgdbench.optimizers``), which is the authority.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib.util
from pathlib import Path
from typing import Any

# Keywords sgdbench sets itself (params, lr) or through ``train.optimizer_impl``.
RESERVED = ("params", "lr", "foreach", "fused", "capturable", "differentiable")
# Classes that cannot run in sgdbench's loop, and why.
UNSUPPORTED = {"SparseAdam": "needs sparse gradients, which no sgdbench problem produces"}

BUILTIN_PRESETS: dict[str, dict[str, Any]] = {
    "momentum": {"type": "SGD", "momentum": 0.9},
    "nesterov": {"type": "SGD", "momentum": 0.9, "nesterov": True},
}


def _optim_folder() -> Path | None:
    spec = importlib.util.find_spec("torch")  # finds the package; imports nothing
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "optim"


@functools.cache
def optim_source(folder: Path, module: str) -> ast.Module:
    """The parsed source of ``torch/optim/<module>.py`` (``__init__`` for the package), parsed
    once per process: this catalog and ``optimizer_checks`` both read it (80 ms a parse of the
    21 files). Callers must not change the tree. Raises ``OSError`` or ``SyntaxError``."""
    return ast.parse((folder / f"{module}.py").read_text(encoding="utf-8"))


def _init_defaults(
    tree: ast.Module, class_name: str, skip: tuple[str, ...]
) -> dict[str, Any] | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    return _defaults(item.args, skip, _module_constants(tree))
    return None


def _defaults(
    args: ast.arguments, skip: tuple[str, ...], constants: dict[str, Any]
) -> dict[str, Any]:
    positional = [*args.posonlyargs, *args.args]
    padded: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    pairs = [*zip(positional, [*padded, *args.defaults], strict=True)]
    pairs += zip(args.kwonlyargs, args.kw_defaults, strict=True)
    out = {}
    for arg, default in pairs:
        if arg.arg in skip:
            continue  # e.g. lr=required: not a literal, and not listed anyway
        out[arg.arg] = None if default is None else _literal(default, constants)
    return out


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    """Module-level ``NAME = literal`` assignments (Muon's defaults are such names)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    out[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    continue
    return out


def _literal(node: ast.expr, constants: dict[str, Any]) -> Any:
    """``ast.literal_eval`` that also reads the module's literal constants by name."""

    class Inline(ast.NodeTransformer):
        def visit_Name(self, name: ast.Name) -> ast.AST:
            if name.id in constants:
                return ast.Constant(constants[name.id])
            raise ValueError(f"not a literal: {name.id}")

    return ast.literal_eval(Inline().visit(copy.deepcopy(node)))  # the shared tree stays


def keyword_defaults(reserved: tuple[str, ...]) -> dict[str, dict[str, Any]] | None:
    """``{class name: {keyword: default}}`` for every optimizer class ``torch.optim`` exports
    (``self`` and ``reserved`` left out), or None when the source cannot be read that way."""
    folder = _optim_folder()
    if folder is None:
        return None
    try:
        package = optim_source(folder, "__init__")
        out: dict[str, dict[str, Any]] = {}
        for node in package.body:
            if not (isinstance(node, ast.ImportFrom) and node.module):
                continue
            if not node.module.startswith("torch.optim."):
                continue
            module = node.module.removeprefix("torch.optim.")
            if module == "optimizer" or "." in module:
                continue
            source = optim_source(folder, module)
            for alias in node.names:
                if not alias.name[:1].isupper():
                    continue  # functions (swap_in_optimizer_params_and_state), not classes
                defaults = _init_defaults(source, alias.name, ("self", *reserved))
                if defaults is None:
                    return None
                out[alias.asname or alias.name] = defaults
        return out or None
    except (OSError, SyntaxError, ValueError, TypeError):
        return None  # a torch whose source does not read this way: ask torch
