"""Names of problems, their parameters, and how to build them.

This module does not import torch: ``sgdbench list problems`` and grid validation of the
parameter *names* work without it. Builders import torch when called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgdbench.errors import KeyedError, did_you_mean
from sgdbench.limits import MAX_SEED
from sgdbench.problems.params import (
    DATA_SEED,
    DROP_LAST,
    HIDDEN,
    MAX_DENSE_DIM,
    MAX_DIM,
    MAX_FEATURES,
    MAX_SAMPLES,
    MODEL,
    VAL,
    Param,
    coerce,
    p,
)


@dataclass(frozen=True)
class ProblemInfo:
    """A built-in problem: ``builder(**params)`` returns a ``Problem``."""

    name: str
    summary: str
    params: tuple[Param, ...]
    builder: str  # "module:function", imported lazily so this module stays torch-free
    function: bool = False  # a function problem: only batch_size = "full" is valid
    extra: dict[str, Any] = field(default_factory=dict)

    def build_fn(self) -> Callable[..., Any]:
        module, func = self.builder.split(":")
        return getattr(importlib.import_module(module), func)


PROBLEMS: dict[str, ProblemInfo] = {
    info.name: info
    for info in [
        ProblemInfo(
            "linear",
            "synthetic regression y = Xw + b + noise, MSE, nn.Linear",
            (
                p(
                    "n_samples",
                    "int",
                    1000,
                    "number of samples",
                    minimum=1,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                p(
                    "n_features",
                    "int",
                    10,
                    "number of features",
                    minimum=1,
                    maximum=MAX_FEATURES,
                    size=True,
                ),
                p("noise", "float", 0.1, "standard deviation of the label noise", minimum=0.0),
                p("weights", "float_list", None, "true weights (default: drawn from N(0,1))"),
                p("bias", "float", None, "true bias (default: drawn from N(0,1))"),
                p("x_low", "float", None, "draw X uniform in [x_low, x_high] instead of N(0,1)"),
                p("x_high", "float", None, "upper end of the uniform X range"),
                DATA_SEED,
            ),
            "sgdbench.problems.builtin:linear",
        ),
        ProblemInfo(
            "logistic",
            "synthetic binary classification, logistic regression (BCE with logits)",
            (
                p(
                    "n_samples",
                    "int",
                    1000,
                    "number of samples",
                    minimum=2,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                p(
                    "n_features",
                    "int",
                    10,
                    "number of features",
                    minimum=1,
                    maximum=MAX_FEATURES,
                    size=True,
                ),
                VAL,
                DATA_SEED,
            ),
            "sgdbench.problems.builtin:logistic",
        ),
        ProblemInfo(
            "quadratic",
            "f(x) = sum(x^2) over a dim-vector; start with init = [..]",
            (p("dim", "int", 1, "dimension of x", minimum=1, maximum=MAX_DIM, size=True),),
            "sgdbench.problems.builtin:quadratic",
            function=True,
        ),
        ProblemInfo(
            "rosenbrock",
            "f(x, y) = (a - x)^2 + b (y - x^2)^2, start (-0.5, 1.5) as in DeepOBS",
            (
                p("a", "float", 1.0, "the a of the Rosenbrock function"),
                p("b", "float", 100.0, "the b of the Rosenbrock function", minimum=0.0),
            ),
            "sgdbench.problems.builtin:rosenbrock",
            function=True,
        ),
        ProblemInfo(
            "noisy_quadratic",
            "DeepOBS quadratic_deep: 0.5 (θ-x)ᵀQ(θ-x), 90 eigenvalues in U(0,1), 10 in U(30,60), "
            "Haar rotation; validation = DeepOBS's test set",
            (
                p(
                    "dim",
                    "int",
                    100,
                    "dimension (10% of eigenvalues are large)",
                    minimum=2,
                    maximum=MAX_DENSE_DIM,
                    size=True,
                ),
                p(
                    "n_samples",
                    "int",
                    1000,
                    "number of noise samples x ~ N(0, noise²)",
                    minimum=1,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                p(
                    "n_test",
                    "int",
                    1000,
                    "size of the test set (the validation slot)",
                    minimum=0,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                p("noise", "float", 0.6, "standard deviation of the samples x", minimum=0.0),
                DROP_LAST,
                p(
                    "seed",
                    "int",
                    42,
                    "seed of Q and of the samples (test: seed + 1), independent of the run seed",
                    minimum=0,
                    maximum=MAX_SEED,
                ),
            ),
            "sgdbench.problems.deepobs:noisy_quadratic",
        ),
        ProblemInfo(
            "two_d_rosenbrock",
            "DeepOBS two_d_rosenbrock: rosenbrock plus u·x + v·y noise per sample; "
            "validation = the noise-free value",
            (
                p(
                    "n_samples",
                    "int",
                    10000,
                    "number of noise pairs (x, y)",
                    minimum=1,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                p("noise", "float", 1.0, "standard deviation of x and y", minimum=0.0),
                DROP_LAST,
                p(
                    "seed",
                    "int",
                    42,
                    "seed of the noise, independent of the run seed",
                    minimum=0,
                    maximum=MAX_SEED,
                ),
            ),
            "sgdbench.problems.deepobs:two_d_rosenbrock",
        ),
        ProblemInfo(
            "digits_cnn",
            "two-layer CNN on scikit-learn's bundled 8x8 digits, softmax classification",
            (
                p(
                    "classes",
                    "int_list",
                    None,
                    "keep only these digits, e.g. [3, 7]",
                    minimum=0,
                    maximum=9,
                ),
                p(
                    "channels",
                    "int",
                    8,
                    "channels of the first conv layer (2x in the second)",
                    minimum=1,
                ),
                VAL,
                DATA_SEED,
            ),
            "sgdbench.problems.convnet:digits_cnn",
        ),
        ProblemInfo(
            "grammar_transformer",
            "one-block transformer, next token of a seeded random 2nd-order Markov grammar",
            (
                p(
                    "n_samples",
                    "int",
                    2000,
                    "number of sequences",
                    minimum=2,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                p("vocab", "int", 8, "number of distinct tokens", minimum=2),
                p(
                    "context",
                    "int",
                    8,
                    "tokens the model sees before the one it predicts",
                    minimum=2,
                ),
                p(
                    "concentration",
                    "float",
                    0.1,
                    "Dirichlet concentration of the grammar's rules (small: near-deterministic)",
                    minimum=1e-3,
                ),
                p("width", "int", 16, "model width", minimum=1),
                p("heads", "int", 2, "attention heads (must divide width)", minimum=1),
                VAL,
                DATA_SEED,
            ),
            "sgdbench.problems.sequence:grammar_transformer",
        ),
        ProblemInfo(
            "digits",
            "scikit-learn's bundled 8x8 digits (no download), softmax classification",
            (
                p(
                    "classes",
                    "int_list",
                    None,
                    "keep only these digits, e.g. [3, 7]",
                    minimum=0,
                    maximum=9,
                ),
                MODEL,
                HIDDEN,
                VAL,
                DATA_SEED,
            ),
            "sgdbench.problems.builtin:digits",
        ),
        ProblemInfo(
            "file",
            "a CSV or Parquet table: path, target column, optional features",
            (
                p("path", "path", help="data file (.csv or .parquet), relative to the grid file"),
                p("target", "str", help="name of the target column"),
                p("features", "str_list", None, "feature columns (default: all but the target)"),
                p(
                    "task",
                    "str",
                    "regression",
                    "what the target is",
                    choices=("regression", "classification"),
                ),
                MODEL,
                HIDDEN,
                p(
                    "val_fraction",
                    "float",
                    0.0,
                    "fraction held out for validation",
                    minimum=0.0,
                    maximum=0.9,
                ),
                p("standardize", "bool", False, "scale features to zero mean, unit variance"),
                DATA_SEED,
            ),
            "sgdbench.problems.files:from_table",
        ),
    ]
}


def is_plugin(name: str) -> bool:
    """``package.module:function`` names a plug-in problem."""
    return ":" in name


def resolve_params(name: str, raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Validate ``[problem]`` keys for a built-in problem and fill in defaults.

    Raises ``KeyedError`` naming the offending key. Plug-ins get their keys unchanged.
    """
    if is_plugin(name):
        return dict(raw)
    info = PROBLEMS.get(name)
    if info is None:
        known = ", ".join(sorted(PROBLEMS))
        hint = did_you_mean(name, PROBLEMS)
        raise KeyedError(
            "name", f"unknown problem {name!r}{hint} (known: {known}, or pkg.mod:func)"
        )
    known_params = {p.name: p for p in info.params}
    for key in raw:
        if key not in known_params:
            allowed = ", ".join(known_params) or "none"
            hint = did_you_mean(key, known_params)
            raise KeyedError(key, f"unknown key for problem {name!r}{hint} (allowed: {allowed})")
    out: dict[str, Any] = {}
    for param in info.params:
        if param.name in raw:
            out[param.name] = coerce(param, raw[param.name], base_dir)
        elif param.required:
            raise KeyedError(param.name, f"required by problem {name!r}")
        else:
            out[param.name] = param.default
    return out


def size_param(name: str, kwargs: dict[str, Any]) -> str | None:
    """The size parameter to blame when building problem ``name`` runs out of memory: the one
    with the largest value (a list counts by its largest entry); None for plug-ins."""
    info = PROBLEMS.get(name)
    if info is None:
        return None
    sizes = {}
    for param in info.params:
        value = kwargs.get(param.name, param.default)
        if param.size and value is not None:
            sizes[param.name] = max(value) if isinstance(value, list) else value
    return max(sizes, key=sizes.__getitem__) if sizes else None


def builder_for(name: str, search_path: str | None = None) -> Callable[..., Any]:
    """The callable that builds problem ``name``. A plug-in is imported here, and only here:
    installed, or from ``search_path`` (the grid's folder) by file location (``plugin``)."""
    if is_plugin(name):
        from sgdbench.problems import plugin

        return plugin.builder(name, search_path)
    return PROBLEMS[name].build_fn()


def is_function_problem(name: str) -> bool:
    info = PROBLEMS.get(name)
    return bool(info and info.function)
