"""``optimizer_checks``: torch.optim's value checks run from its source agree with torch."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from sgdbench import optimizer_catalog, optimizer_checks

CATALOG = optimizer_catalog.keyword_defaults(optimizer_catalog.RESERVED) or {}
STACKABLE = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")


def _torch(name: str, lr: float, kwargs: dict[str, Any]) -> str | None:
    dummy = torch.nn.Parameter(torch.zeros(2, 2))
    try:
        getattr(torch.optim, name)([dummy], lr=lr, **kwargs)
    except (ValueError, TypeError, RuntimeError) as e:
        return str(e).splitlines()[0]
    return None


def _cases(defaults: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    """The defaults, then each numeric keyword at -1, 0, 0.5 and 1, each flag on, pairs."""
    cases: list[tuple[float, dict[str, Any]]] = [(0.1, {}), (-0.1, {}), (0.0, {})]
    for key, default in defaults.items():
        if isinstance(default, bool):
            cases.append((0.1, {key: not default}))
        elif isinstance(default, int | float):
            cases += [(0.1, {key: type(default)(v)}) for v in (-1, 0, 0.5, 1, 2)]
        elif isinstance(default, tuple) and all(isinstance(v, float) for v in default):
            for values in itertools.product((-0.5, 0.0, 0.9, 1.0, 1.5), repeat=len(default)):
                cases.append((0.1, {key: values}))
    if "nesterov" in defaults:
        cases += [
            (0.1, {"nesterov": True, "momentum": m, "dampening": d})
            for m in (0.0, 0.9)
            for d in (0.0, 0.1)
        ]
    return cases


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_verdicts_agree_with_torch(name: str) -> None:
    if name == "SparseAdam":
        pytest.skip("refused by sgdbench before any check")
    known = 0
    for lr, kwargs in _cases(CATALOG[name]):
        verdict = optimizer_checks.verdict(name, lr, kwargs)
        if verdict == optimizer_checks.UNKNOWN:
            continue
        known += 1
        assert verdict == _torch(name, lr, kwargs), (name, lr, kwargs)
    if name in STACKABLE:  # the optimizers of most grids load without torch
        assert known == len(_cases(CATALOG[name])), name


def test_an_unreadable_check_is_unknown_not_a_pass() -> None:
    assert optimizer_checks.verdict("LBFGS", 0.1, {}) == optimizer_checks.UNKNOWN  # assigns
    assert optimizer_checks.verdict("NoSuchOptimizer", 0.1, {}) == optimizer_checks.UNKNOWN
    assert optimizer_checks.verdict("SGD", 0.1, {"momentum": None}) == optimizer_checks.UNKNOWN
