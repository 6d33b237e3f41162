"""The stacked engine's ``ELEMENTWISE`` and ``FLAGS`` tables (``stacked_optim``), read from
``stacked_optim/algorithms.py`` without importing it (it imports torch), so that a grid's
stacked groups (``plan.group_id``) are known without torch. Each algorithm block declares them as
literal class attributes (``elementwise = {...}``, ``{**Adam.elementwise, ...}`` for a variant);
anything else makes ``tables`` import ``stacked_optim``, the authority.
``tests/test_startup.py`` checks that both give the same tables.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

ALGORITHMS = Path(__file__).resolve().parent / "stacked_optim" / "algorithms.py"
Table = dict[str, dict[str, Any]]


def _value(node: ast.expr, known: dict[str, dict[str, Any]], attr: str) -> dict[str, Any]:
    """A dict literal whose ``**Name.attr`` entries name classes read before it."""
    if not isinstance(node, ast.Dict):
        raise ValueError("not a dict")
    out: dict[str, Any] = {}
    for key, value in zip(node.keys, node.values, strict=True):
        if key is None:
            if not (
                isinstance(value, ast.Attribute)
                and value.attr == attr
                and isinstance(value.value, ast.Name)
                and value.value.id in known
            ):
                raise ValueError("not a known class's table")
            out.update(known[value.value.id])
        else:
            out[ast.literal_eval(key)] = ast.literal_eval(value)
    return out


def read(path: Path = ALGORITHMS) -> tuple[Table, Table] | None:
    """(ELEMENTWISE, FLAGS) by class name, or None when the source does not read plainly."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        tables: dict[str, Table] = {"elementwise": {}, "flags": {}}
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                if (
                    isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and item.target.id in tables
                    and item.value is not None
                ):
                    attr = item.target.id
                    tables[attr][node.name] = _value(item.value, tables[attr], attr)
        if set(tables["elementwise"]) != set(tables["flags"]) or not tables["flags"]:
            return None
        return tables["elementwise"], tables["flags"]
    except (OSError, SyntaxError, ValueError):
        return None


@functools.cache
def tables() -> tuple[Table, Table]:
    """(ELEMENTWISE, FLAGS): from the source, else from ``stacked_optim`` (imports torch)."""
    static = read()
    if static is not None:
        return static
    from sgdbench import stacked_optim

    return stacked_optim.ELEMENTWISE, stacked_optim.FLAGS


def group_flags(class_name: str, kwargs: dict[str, Any]) -> dict[str, bool]:
    """``stacked_optim.group_flags`` from the tables."""
    flags = tables()[1]
    return {k: bool(kwargs.get(k, default)) for k, default in flags.get(class_name, {}).items()}
