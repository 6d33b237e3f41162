"""Names of problems, their parameters, and how to build them.

This module does not import torch: ``sgdbench list problems`` and grid validation of the
parameter *names* work without it. Builders import torch when called.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgdbench.errors import KeyedError, did_you_mean
from sgdbench.limits import FLOAT32_MAX, MAX_SEED

_NO_DEFAULT = object()


@dataclass(frozen=True)
class Param:
    """One ``[problem]`` key: its type, default, allowed values and help text."""

    name: str
    kind: str  # int | float | bool | str | path | int_list | float_list
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    size: bool = False  # memory grows with it: an allocation failure while building names it

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


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


def _p(name: str, kind: str, default: Any = _NO_DEFAULT, help: str = "", **kw: Any) -> Param:
    return Param(name, kind, default, help, **kw)


_DATA_SEED = _p(
    "seed",
    "int",
    0,
    "seed of the data (and split), independent of the run seed",
    minimum=0,
    maximum=MAX_SEED,
)
_VAL = _p(
    "val_fraction",
    "float",
    0.2,
    "fraction of samples held out for validation",
    minimum=0.0,
    maximum=0.9,
)
_MODEL = _p("model", "str", "linear", "model: a linear layer or an MLP", choices=("linear", "mlp"))
_HIDDEN = _p(
    "hidden",
    "int_list",
    [64],
    "hidden layer widths of the MLP",
    minimum=1,
    maximum=100_000,
    size=True,
)
# Upper bounds of the sizes of synthetic problems (README, "Grid file"): far above any benchmark
# that trains in reasonable time, low enough that a typo (an extra three zeros) is caught at load.
MAX_SAMPLES = 100_000_000
MAX_FEATURES = 1_000_000
MAX_DIM = 100_000_000
MAX_DENSE_DIM = 10_000  # noisy_quadratic builds a dense dim x dim matrix
_DROP_LAST = _p(
    "drop_last", "bool", True, "skip each epoch's last, short batch (as DeepOBS's data loaders)"
)

PROBLEMS: dict[str, ProblemInfo] = {
    p.name: p
    for p in [
        ProblemInfo(
            "linear",
            "synthetic regression y = Xw + b + noise, MSE, nn.Linear",
            (
                _p(
                    "n_samples",
                    "int",
                    1000,
                    "number of samples",
                    minimum=1,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                _p(
                    "n_features",
                    "int",
                    10,
                    "number of features",
                    minimum=1,
                    maximum=MAX_FEATURES,
                    size=True,
                ),
                _p("noise", "float", 0.1, "standard deviation of the label noise", minimum=0.0),
                _p("weights", "float_list", None, "true weights (default: drawn from N(0,1))"),
                _p("bias", "float", None, "true bias (default: drawn from N(0,1))"),
                _p("x_low", "float", None, "draw X uniform in [x_low, x_high] instead of N(0,1)"),
                _p("x_high", "float", None, "upper end of the uniform X range"),
                _DATA_SEED,
            ),
            "sgdbench.problems.builtin:linear",
        ),
        ProblemInfo(
            "logistic",
            "synthetic binary classification, logistic regression (BCE with logits)",
            (
                _p(
                    "n_samples",
                    "int",
                    1000,
                    "number of samples",
                    minimum=2,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                _p(
                    "n_features",
                    "int",
                    10,
                    "number of features",
                    minimum=1,
                    maximum=MAX_FEATURES,
                    size=True,
                ),
                _VAL,
                _DATA_SEED,
            ),
            "sgdbench.problems.builtin:logistic",
        ),
        ProblemInfo(
            "quadratic",
            "f(x) = sum(x^2) over a dim-vector; start with init = [..]",
            (_p("dim", "int", 1, "dimension of x", minimum=1, maximum=MAX_DIM, size=True),),
            "sgdbench.problems.builtin:quadratic",
            function=True,
        ),
        ProblemInfo(
            "rosenbrock",
            "f(x, y) = (a - x)^2 + b (y - x^2)^2, start (-0.5, 1.5) as in DeepOBS",
            (
                _p("a", "float", 1.0, "the a of the Rosenbrock function"),
                _p("b", "float", 100.0, "the b of the Rosenbrock function", minimum=0.0),
            ),
            "sgdbench.problems.builtin:rosenbrock",
            function=True,
        ),
        ProblemInfo(
            "noisy_quadratic",
            "DeepOBS quadratic_deep: 0.5 (θ-x)ᵀQ(θ-x), 90 eigenvalues in U(0,1), 10 in U(30,60), "
            "Haar rotation; validation = DeepOBS's test set",
            (
                _p(
                    "dim",
                    "int",
                    100,
                    "dimension (10% of eigenvalues are large)",
                    minimum=2,
                    maximum=MAX_DENSE_DIM,
                    size=True,
                ),
                _p(
                    "n_samples",
                    "int",
                    1000,
                    "number of noise samples x ~ N(0, noise²)",
                    minimum=1,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                _p(
                    "n_test",
                    "int",
                    1000,
                    "size of the test set (the validation slot)",
                    minimum=0,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                _p("noise", "float", 0.6, "standard deviation of the samples x", minimum=0.0),
                _DROP_LAST,
                _p(
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
                _p(
                    "n_samples",
                    "int",
                    10000,
                    "number of noise pairs (x, y)",
                    minimum=1,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                _p("noise", "float", 1.0, "standard deviation of x and y", minimum=0.0),
                _DROP_LAST,
                _p(
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
                _p(
                    "classes",
                    "int_list",
                    None,
                    "keep only these digits, e.g. [3, 7]",
                    minimum=0,
                    maximum=9,
                ),
                _p(
                    "channels",
                    "int",
                    8,
                    "channels of the first conv layer (2x in the second)",
                    minimum=1,
                ),
                _VAL,
                _DATA_SEED,
            ),
            "sgdbench.problems.convnet:digits_cnn",
        ),
        ProblemInfo(
            "grammar_transformer",
            "one-block transformer, next token of a seeded random 2nd-order Markov grammar",
            (
                _p(
                    "n_samples",
                    "int",
                    2000,
                    "number of sequences",
                    minimum=2,
                    maximum=MAX_SAMPLES,
                    size=True,
                ),
                _p("vocab", "int", 8, "number of distinct tokens", minimum=2),
                _p(
                    "context",
                    "int",
                    8,
                    "tokens the model sees before the one it predicts",
                    minimum=2,
                ),
                _p(
                    "concentration",
                    "float",
                    0.1,
                    "Dirichlet concentration of the grammar's rules (small: near-deterministic)",
                    minimum=1e-3,
                ),
                _p("width", "int", 16, "model width", minimum=1),
                _p("heads", "int", 2, "attention heads (must divide width)", minimum=1),
                _VAL,
                _DATA_SEED,
            ),
            "sgdbench.problems.sequence:grammar_transformer",
        ),
        ProblemInfo(
            "digits",
            "scikit-learn's bundled 8x8 digits (no download), softmax classification",
            (
                _p(
                    "classes",
                    "int_list",
                    None,
                    "keep only these digits, e.g. [3, 7]",
                    minimum=0,
                    maximum=9,
                ),
                _MODEL,
                _HIDDEN,
                _VAL,
                _DATA_SEED,
            ),
            "sgdbench.problems.builtin:digits",
        ),
        ProblemInfo(
            "file",
            "a CSV or Parquet table: path, target column, optional features",
            (
                _p("path", "path", help="data file (.csv or .parquet), relative to the grid file"),
                _p("target", "str", help="name of the target column"),
                _p("features", "str_list", None, "feature columns (default: all but the target)"),
                _p(
                    "task",
                    "str",
                    "regression",
                    "what the target is",
                    choices=("regression", "classification"),
                ),
                _MODEL,
                _HIDDEN,
                _p(
                    "val_fraction",
                    "float",
                    0.0,
                    "fraction held out for validation",
                    minimum=0.0,
                    maximum=0.9,
                ),
                _p("standardize", "bool", False, "scale features to zero mean, unit variance"),
                _DATA_SEED,
            ),
            "sgdbench.problems.files:from_table",
        ),
    ]
}


def is_plugin(name: str) -> bool:
    """``package.module:function`` names a plug-in problem."""
    return ":" in name


def _check_number(param: Param, key: str, value: Any) -> None:
    if param.minimum is not None and value < param.minimum:
        raise KeyedError(key, f"must be >= {param.minimum:g}, got {value!r}")
    if param.maximum is not None and value > param.maximum:
        raise KeyedError(key, f"must be <= {param.maximum:g}, got {value!r}")


def _check_float32(key: str, value: float) -> None:
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise KeyedError(key, f"must be a finite number within float32 range, got {value!r}")


def _coerce(param: Param, value: Any, base_dir: Path) -> Any:
    """Check one value against its ``Param``; return it normalized (paths made absolute)."""
    if value is None and not param.required and param.default is None:
        return None
    return _COERCE[param.kind](param, value, base_dir)


def _bool(param: Param, value: Any, base_dir: Path) -> bool:
    if not isinstance(value, bool):
        raise KeyedError(param.name, f"must be true or false, got {value!r}")
    return value


def _int(param: Param, value: Any, base_dir: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KeyedError(param.name, f"must be an integer, got {value!r}")
    _check_number(param, param.name, value)
    return value


def _float(param: Param, value: Any, base_dir: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KeyedError(param.name, f"must be a number, got {value!r}")
    _check_float32(param.name, value)
    _check_number(param, param.name, value)
    return float(value)


def _str(param: Param, value: Any, base_dir: Path) -> str:
    key = param.name
    if not isinstance(value, str) or not value:
        raise KeyedError(key, f"must be a non-empty string, got {value!r}")
    if param.choices and value not in param.choices:
        raise KeyedError(key, f"must be one of {', '.join(param.choices)}; got {value!r}")
    return value


def _path(param: Param, value: Any, base_dir: Path) -> str:
    key = param.name
    path = (base_dir / _str(param, value, base_dir)).resolve()
    if not path.is_file():
        raise KeyedError(key, f"no such file: {value}")
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise KeyedError(key, f"must be a .csv or .parquet file, got {value}")
    return str(path)


def _list(param: Param, value: Any, base_dir: Path) -> list[Any]:
    key = param.name
    if not isinstance(value, list) or not value:
        raise KeyedError(key, f"must be a non-empty list, got {value!r}")
    item = param.kind.removesuffix("_list")
    inner = Param(key, item, _NO_DEFAULT, "", minimum=param.minimum, maximum=param.maximum)
    out = []
    for i, v in enumerate(value):
        try:
            out.append(_coerce(inner, v, base_dir))
        except KeyedError as e:
            raise KeyedError(f"{key}[{i}]", e.message) from None
    return out


_COERCE = {
    "bool": _bool,
    "int": _int,
    "float": _float,
    "str": _str,
    "path": _path,
    "int_list": _list,
    "float_list": _list,
    "str_list": _list,
}


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
            out[param.name] = _coerce(param, raw[param.name], base_dir)
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
