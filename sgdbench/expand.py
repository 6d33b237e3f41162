"""Expanding a validated grid into combinations: axes, ``[[exclude]]`` then ``[[include]]``
with GitHub-Actions matrix semantics. Pure: no torch, no problem built. Every value travels with
its location in the file (``grid.lr[2]``) so later checks can name it."""

from __future__ import annotations

import itertools
import math
from typing import Any

from sgdbench.errors import did_you_mean
from sgdbench.grid_values import axis_values, check_axis_value
from sgdbench.limits import MAX_RUNS
from sgdbench.schema import FIXED_AXES, GridAxes
from sgdbench.schema_errors import PydanticCustomError, SchemaError

Located = list[tuple[Any, str]]
Combo = dict[str, tuple[Any, str]]  # key -> (value, location of that value in the file)
Axes = dict[str, Located]


def axes(grid: GridAxes, order: list[str], known: list[str], tuple_keys: frozenset[str]) -> Axes:
    """Every axis of ``[grid]`` with located values, in file order (``order``: the keys as
    written); ``known``: the keys [grid] accepts (the fixed axes and every optimizer keyword),
    ``tuple_keys``: keywords whose value is a tuple (a flat list is one value)."""
    out: Axes = {}
    extras = grid.model_extra or {}
    for key in order:
        if key.startswith("problem."):
            out[key] = _axis(f"grid.{key}", key, grid.problem[key[len("problem.") :]], known)
            continue
        if key in FIXED_AXES:
            out[key] = [(v, f"grid.{key}{where}") for v, where in getattr(grid, key)]
        else:
            out[key] = _axis(f"grid.{key}", key, extras[key], known, key in tuple_keys)
    if "lr" not in out:
        raise SchemaError("grid.lr", "required: the learning rate(s), e.g. lr = [0.01, 0.1]")
    out.setdefault("optimizer", [("sgd", "grid.optimizer")])
    out.setdefault("seed", [(0, "grid.seed")])
    out.setdefault("device", [("cpu", "grid.device")])
    return out


def _axis(loc: str, key: str, raw: Any, known: list[str], one_value: bool = False) -> Located:
    check_key(loc, key, known)
    if key == "problem.name":
        raise SchemaError(loc, "the problem itself is not an axis: one grid, one problem")
    check = check_axis_value(key) if not key.startswith("problem.") else _as_is
    return [(v, loc + where) for v, where in _located(loc, raw, check, one_value)]


def _as_is(value: Any) -> Any:
    return value  # problem parameters are checked per combination, by the problem's registry


def _located(loc: str, raw: Any, check: Any, one_value: bool = False) -> Located:
    try:
        return axis_values(raw, check, one_value)
    except PydanticCustomError as e:
        ctx = e.context or {}
        raise SchemaError(loc + ctx["key"], ctx["message"]) from None
    except ValueError as e:
        raise SchemaError(loc, str(e)) from None


def check_key(loc: str, key: str, known: list[str]) -> None:
    """A [grid] key that no optimizer accepts is a misspelling, not an optimizer mismatch."""
    if key.startswith("problem.") or key in known:
        return
    raise SchemaError(
        loc,
        f"unknown key{did_you_mean(key, known)} (the axes {', '.join(FIXED_AXES)}, "
        "problem.KEY, or a keyword of a torch.optim class)",
    )


def entries(section: str, raw: list[dict[str, Any]], axes: Axes, known: list[str]) -> list[Combo]:
    """``[[exclude]]`` or ``[[include]]``: each entry's keys checked, values located."""
    out = []
    for i, entry in enumerate(raw):
        if not entry:
            raise SchemaError(f"{section}[{i}]", "is empty")
        checked: Combo = {}
        for key, value in flatten_problem_keys(entry).items():
            loc = f"{section}[{i}].{key}"
            check_key(loc, key, known)
            if section == "exclude" and key not in axes:
                raise SchemaError(
                    loc, f"not a [grid] key{did_you_mean(key, axes)} (grid keys: {', '.join(axes)})"
                )
            if key == "problem.name":
                raise SchemaError(loc, "the problem itself is not an axis: one grid, one problem")
            check = _as_is if key.startswith("problem.") else check_axis_value(key)
            located = _located(loc, value, check, one_value=True)
            if len(located) != 1:
                raise SchemaError(loc, f"must be one value, got {value!r}")
            checked[key] = (located[0][0], loc)
        out.append(checked)
    return out


def flatten_problem_keys(table: dict[str, Any]) -> dict[str, Any]:
    """``problem.model = [...]`` parses as a nested table: make it a "problem.model" key."""
    out = {}
    for key, value in table.items():
        if key == "problem" and isinstance(value, dict):
            out.update({f"problem.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def expand(axes: Axes, excludes: list[Combo], includes: list[Combo]) -> list[Combo]:
    """The cartesian product of ``axes``, minus excludes, plus includes (GitHub semantics)."""
    keys = list(axes)
    check_run_count(math.prod(len(v) for v in axes.values()))
    combos: list[Combo] = [
        dict(zip(keys, vals, strict=True)) for vals in itertools.product(*axes.values())
    ]
    combos = [
        c
        for c in combos
        if not any(all(c[k][0] == v for k, (v, _) in ex.items()) for ex in excludes)
    ]
    original = set(keys)
    for inc in includes:
        matched = False
        for c in combos:
            if all(c[k][0] == v for k, (v, _) in inc.items() if k in original and k in c):
                c.update({k: v for k, v in inc.items() if k not in original})
                matched = True
        if not matched:
            # A new combination: it runs for every value of the axes it does not name
            # (so an included configuration gets every seed and device of the grid).
            free = [k for k in keys if k not in inc]
            check_run_count(len(combos) + math.prod(len(axes[k]) for k in free))
            for vals in itertools.product(*(axes[k] for k in free)):
                combos.append({**dict(zip(free, vals, strict=True)), **inc})
    return combos


def check_run_count(count: int) -> None:
    """Refuse a grid of more than ``MAX_RUNS`` combinations before expanding it (a product of
    10^8 once took 108 s to fail with MemoryError)."""
    if count > MAX_RUNS:
        raise SchemaError(
            "grid",
            f"{count:_} combinations, more than the limit of {MAX_RUNS:_}; split the grid into "
            "several files",
        )


def varying(combos: list[Combo]) -> list[str]:
    """The keys whose value differs between combinations, in grid order."""
    keys = list(dict.fromkeys(k for c in combos for k in c))
    return [k for k in keys if len({repr(c[k][0]) if k in c else None for c in combos}) > 1]
