"""torch.optim's own checks of an optimizer's values, read from torch's source and run without
importing torch, so that loading a grid (``--dry-run``) does not pay torch's import.

An optimizer's ``__init__`` starts with checks such as ``if not 0.0 <= lr: raise
ValueError(f"Invalid learning rate: {lr}")``. ``verdict`` runs every such top-level check of the
class (and of the class it hands its values to with ``super().__init__``) on the grid's values:
None when all pass, else the message torch would raise. Whatever it cannot read or evaluate
plainly (a name it does not know, a loop that raises, a branch that assigns) makes it return
``UNKNOWN``, and the caller builds the optimizer with torch, which stays the authority.
``tests/test_optimizer_checks.py`` compares the verdicts with torch's on many values.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

from sgdbench.optimizer_catalog import _optim_folder, optim_source

UNKNOWN = "unknown"  # the source cannot tell: ask torch
_ERRORS = ("ValueError", "TypeError", "RuntimeError")


class _Unknown(Exception):
    pass


class _NotATensor:
    """Stands for ``torch.Tensor`` in ``isinstance`` tests: grid values are never tensors."""


@functools.cache
def _classes() -> dict[str, tuple[ast.ClassDef, str]] | None:
    """Every class of ``torch/optim``'s modules: (its definition, its module's name)."""
    folder = _optim_folder()
    if folder is None:
        return None
    out: dict[str, tuple[ast.ClassDef, str]] = {}
    try:
        package = optim_source(folder, "__init__")
        imported = [n.module for n in package.body if isinstance(n, ast.ImportFrom) and n.module]
        # the modules torch.optim imports its classes from, and the base class's
        modules = {"optimizer"} | {
            m.removeprefix("torch.optim.") for m in imported if m.startswith("torch.optim.")
        }
        for module in sorted(m for m in modules if "." not in m):
            for node in optim_source(folder, module).body:
                if isinstance(node, ast.ClassDef):
                    out.setdefault(node.name, (node, module))
    except (OSError, SyntaxError, ValueError):
        return None
    return out


def _init(cls: ast.ClassDef) -> ast.FunctionDef | None:
    return next(
        (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None
    )


def _bind(init: ast.FunctionDef, given: dict[str, Any]) -> dict[str, Any]:
    """The ``__init__``'s arguments: the given values, else the literal defaults."""
    args = init.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    pairs = [*zip(positional, [*defaults, *args.defaults], strict=True)]
    pairs += zip(args.kwonlyargs, args.kw_defaults, strict=True)
    env: dict[str, Any] = {}
    for arg, default in pairs:
        if arg.arg in given:
            env[arg.arg] = given[arg.arg]
        elif default is not None:
            try:
                env[arg.arg] = ast.literal_eval(default)
            except ValueError:
                continue  # e.g. lr=required: unknown, and an error if a check reads it
    return env


@functools.cache
def _compiled(node: ast.expr) -> Any:
    return compile(ast.Expression(node), "<torch.optim check>", "eval")


def _eval(node: ast.expr, env: dict[str, Any]) -> Any:
    names = {"Tensor": _NotATensor, "isinstance": isinstance, "len": len, "float": float}
    names.update(int=int, bool=bool, tuple=tuple)
    code = _compiled(node)
    try:
        return eval(code, {"__builtins__": {}}, {**names, **env})
    except (NameError, AttributeError) as e:
        raise _Unknown(str(e)) from None


def _raised(stmt: ast.stmt, env: dict[str, Any]) -> str | None:
    """The message a ``raise ValueError(...)`` statement raises."""
    if not (isinstance(stmt, ast.Raise) and isinstance(stmt.exc, ast.Call)):
        raise _Unknown("not a plain raise")
    func, args = stmt.exc.func, stmt.exc.args
    if not (isinstance(func, ast.Name) and func.id in _ERRORS and len(args) == 1):
        raise _Unknown("not a ValueError")
    return str(_eval(args[0], env))


def _super_call(stmt: ast.stmt) -> ast.Call | None:
    """``super().__init__(...)`` as a statement."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        func = stmt.value.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "__init__"
            and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name)
            and func.value.func.id == "super"
        ):
            return stmt.value
    return None


def _run(class_name: str, given: dict[str, Any], depth: int = 0) -> str | None:
    classes = _classes()
    if classes is None or class_name not in classes or depth > 3:
        raise _Unknown(class_name)
    cls = classes[class_name][0]
    init = _init(cls)
    if init is None:
        raise _Unknown(f"{class_name} has no __init__")
    env = _bind(init, given)
    for stmt in init.body:
        if isinstance(stmt, ast.If):
            if not _eval(stmt.test, env):
                continue
            if len(stmt.body) != 1:
                raise _Unknown("a branch that does more than raise")
            return _raised(stmt.body[0], env)
        if (call := _super_call(stmt)) is not None:
            message = _delegate(cls, call, env, depth)
            if message is not None:
                return message
            continue
        if any(isinstance(n, ast.Raise) for n in ast.walk(stmt)):
            raise _Unknown("a raise outside a plain check")
    return None


def _delegate(cls: ast.ClassDef, call: ast.Call, env: dict[str, Any], depth: int) -> str | None:
    """Checks of the base class that ``super().__init__(...)`` hands the values to."""
    base = cls.bases[0] if len(cls.bases) == 1 else None
    if not isinstance(base, ast.Name):
        raise _Unknown("several bases")
    if base.id == "Optimizer":
        return None  # the base Optimizer checks only the parameters, here a plain tensor
    classes = _classes()
    assert classes is not None
    base_init = _init(classes[base.id][0]) if base.id in classes else None
    if base_init is None or any(isinstance(a, ast.Starred) for a in call.args):
        raise _Unknown("an unreadable super().__init__")
    names = [a.arg for a in [*base_init.args.posonlyargs, *base_init.args.args]][1:]  # no self
    given = {n: _eval(a, env) for n, a in zip(names, call.args, strict=False) if n != "params"}
    for kw in call.keywords:
        if kw.arg is None:
            raise _Unknown("**kwargs")
        given[kw.arg] = _eval(kw.value, env)
    return _run(base.id, given, depth + 1)


def verdict(class_name: str, lr: float, kwargs: dict[str, Any]) -> str | None:
    """None when torch would build ``class_name`` with ``lr`` and ``kwargs`` (tuples as torch
    takes them), the message it would raise otherwise, or ``UNKNOWN``."""
    if any(
        not isinstance(v, bool | int | float | tuple)
        or (isinstance(v, tuple) and not all(isinstance(x, int | float) for x in v))
        for v in kwargs.values()
    ):
        return UNKNOWN  # None, strings...: the checks may not be all there is
    # The types are part of the key: 1 == 1.0, but torch's message prints them differently.
    key = tuple(sorted((k, _typed(v)) for k, v in kwargs.items()))
    return _cached(class_name, _typed(lr), key)


def _typed(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_typed(v) for v in value)
    return (type(value), value)


def _untyped(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], type):
        return value[1]
    return tuple(_untyped(v) for v in value)


@functools.lru_cache(maxsize=4096)
def _cached(class_name: str, lr: Any, kwargs: tuple[tuple[str, Any], ...]) -> str | None:
    try:
        given = {k: _untyped(v) for k, v in kwargs}
        return _run(class_name, {"lr": _untyped(lr), **given})
    except (_Unknown, TypeError, IndexError, KeyError, ArithmeticError):
        return UNKNOWN
