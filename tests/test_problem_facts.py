"""``problems.facts``: the plan's view of a built-in problem, checked against the built problem
over a range of parameters, and the errors both refuse a bad combination with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sgdbench.errors import KeyedError
from sgdbench.problems.factory import build_problem, parameter_count
from sgdbench.problems.facts import DESCRIBE, DIGITS_PER_CLASS, describe
from sgdbench.problems.registry import PROBLEMS, resolve_params

CASES: list[tuple[str, dict[str, Any]]] = [
    ("linear", {}),
    ("linear", {"n_samples": 7, "n_features": 3, "weights": [1.0, 2.0, 3.0]}),
    ("linear", {"x_low": -1.0, "x_high": 2.0}),
    ("logistic", {}),
    ("logistic", {"n_samples": 11, "val_fraction": 0.0}),
    ("logistic", {"n_samples": 9, "n_features": 4, "val_fraction": 0.5}),
    ("quadratic", {"dim": 5}),
    ("rosenbrock", {}),
    ("noisy_quadratic", {"dim": 20, "n_samples": 50, "n_test": 0, "drop_last": False}),
    ("noisy_quadratic", {"dim": 10, "n_samples": 30, "n_test": 7}),
    ("two_d_rosenbrock", {"n_samples": 100}),
    ("digits", {}),
    ("digits", {"classes": [3, 7, 3], "val_fraction": 0.0}),
    ("digits", {"model": "mlp", "hidden": [5, 4], "classes": [0, 1, 9], "val_fraction": 0.3}),
    ("digits_cnn", {"channels": 3, "classes": [2, 5]}),
    ("digits_cnn", {}),
    ("grammar_transformer", {"n_samples": 50, "vocab": 5, "context": 4, "width": 6, "heads": 3}),
    ("grammar_transformer", {"n_samples": 40, "val_fraction": 0.0}),
]


@pytest.mark.parametrize(("name", "raw"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_facts_equal_the_built_problem(name: str, raw: dict[str, Any]) -> None:
    kwargs = resolve_params(name, raw, Path("."))
    facts = describe(name, kwargs)
    problem = build_problem(name, kwargs, 0)
    assert facts is not None
    assert facts.n_samples == problem.n_samples
    assert facts.n_params == parameter_count(problem)
    assert facts.function == (problem.task == "function")
    assert facts.has_val == (problem.X_val is not None)
    assert facts.drop_last == problem.drop_last


def test_every_built_in_problem_but_file_has_facts() -> None:
    assert set(DESCRIBE) == set(PROBLEMS) - {"file"}
    assert {n for n, _ in CASES} == set(DESCRIBE)


def test_digit_counts_are_scikit_learns() -> None:
    import numpy as np
    from sklearn.datasets import load_digits

    assert tuple(np.bincount(load_digits().target).tolist()) == DIGITS_PER_CLASS


BAD = [
    ("linear", {"n_features": 3, "weights": [1.0]}, "weights"),
    ("linear", {"x_low": 1.0}, "x_high"),
    ("linear", {"x_low": 1.0, "x_high": 1.0}, "x_high"),
    ("logistic", {"n_samples": 3, "val_fraction": 0.9}, "val_fraction"),
    ("digits", {"classes": [4, 4]}, "classes"),
    ("grammar_transformer", {"width": 6, "heads": 4}, "heads"),
]


@pytest.mark.parametrize(("name", "raw", "key"), BAD)
def test_facts_refuse_what_the_builder_refuses_with_its_message(
    name: str, raw: dict[str, Any], key: str
) -> None:
    kwargs = resolve_params(name, raw, Path("."))
    with pytest.raises(KeyedError) as described:
        describe(name, kwargs)
    with pytest.raises(KeyedError) as built:
        build_problem(name, kwargs, 0)
    assert (described.value.key, described.value.message) == (built.value.key, built.value.message)
    assert described.value.key == key
