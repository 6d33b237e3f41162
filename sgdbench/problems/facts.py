"""What the plan needs to know of a built-in problem, without building it (and without torch):
its training-sample count, parameter count, validation set, ``drop_last``, and a rough size of
what building it allocates. The builders call the same checks (``check_*``), so a bad
combination of parameters is refused with the same message at load time and at build time.

``tests/test_problems.py`` builds every built-in problem over a range of parameters and checks
these facts against the built problem. The ``file`` problem has no facts (its sizes are in the
data file): the plan builds it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sgdbench.errors import KeyedError

# Samples per digit in scikit-learn's bundled 8x8 digits (load_digits(): 1,797 images of 64
# pixels); the test of the facts compares them with scikit-learn's.
DIGITS_PER_CLASS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)
DIGITS_FEATURES = 64


@dataclass(frozen=True)
class Facts:
    """A problem as the plan sees it (``Problem.n_samples``, parameter count, ...)."""

    n_samples: int  # training samples; 1 for function problems
    n_params: int  # trainable parameters
    function: bool = False
    has_val: bool = False
    drop_last: bool = False
    nbytes: int = 0  # about what building it allocates: larger than memory cannot be built


def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """(train, validation) sizes of ``builtin.split``; KeyedError when nothing is left."""
    n_val = round(n * val_fraction)
    if n_val and n_val >= n:
        raise KeyedError("val_fraction", f"leaves no training samples out of {n}")
    return n - n_val, n_val


def check_linear(
    n_features: int, weights: list[float] | None, x_low: float | None, x_high: float | None
) -> None:
    if weights is not None and len(weights) != n_features:
        raise KeyedError("weights", f"has {len(weights)} values for {n_features} features")
    if (x_low is None) != (x_high is None):
        raise KeyedError("x_high" if x_high is None else "x_low", "give both x_low and x_high")
    if x_low is not None and x_high is not None and x_high <= x_low:
        raise KeyedError("x_high", f"must be > x_low ({x_low}), got {x_high}")


def check_classes(classes: list[int] | None) -> None:
    if classes is not None and len(set(classes)) < 2:
        raise KeyedError("classes", f"needs at least two distinct digits, got {classes}")


def check_heads(width: int, heads: int) -> None:
    if width % heads:
        raise KeyedError("heads", f"must divide width ({width}), got {heads}")


def mlp_params(n_in: int, hidden: list[int], n_out: int) -> int:
    """Parameters of ``builtin.mlp``: a weight matrix and a bias per layer."""
    widths = [n_in, *hidden, n_out]
    return sum(a * b + b for a, b in itertools.pairwise(widths))


def _linear(
    n_samples: int, n_features: int, weights: Any, x_low: Any, x_high: Any, **_: Any
) -> Facts:
    check_linear(n_features, weights, x_low, x_high)
    return Facts(n_samples, n_features + 1, nbytes=4 * n_samples * (n_features + 2))


def _logistic(n_samples: int, n_features: int, val_fraction: float, **_: Any) -> Facts:
    n_train, n_val = split_sizes(n_samples, val_fraction)
    return Facts(n_train, n_features + 1, has_val=n_val > 0, nbytes=8 * n_samples * n_features)


def _quadratic(dim: int) -> Facts:
    return Facts(1, dim, function=True, nbytes=4 * dim)


def _rosenbrock(**_: Any) -> Facts:
    return Facts(1, 2, function=True)


def _noisy_quadratic(dim: int, n_samples: int, n_test: int, drop_last: bool, **_: Any) -> Facts:
    nbytes = 8 * dim * dim * 4 + 8 * (n_samples + n_test) * dim  # float64 in NumPy first
    return Facts(n_samples, dim, has_val=n_test > 0, drop_last=drop_last, nbytes=nbytes)


def _two_d_rosenbrock(n_samples: int, drop_last: bool, **_: Any) -> Facts:
    return Facts(n_samples, 2, has_val=True, drop_last=drop_last, nbytes=16 * n_samples)


def _digits_split(classes: list[int] | None, val_fraction: float) -> tuple[int, int, int]:
    """(train samples, validation samples, classes) of the digits problems."""
    check_classes(classes)
    kept = range(10) if classes is None else sorted(set(classes))
    n = sum(DIGITS_PER_CLASS[c] for c in kept)
    n_train, n_val = split_sizes(n, val_fraction)
    return n_train, n_val, len(kept)


def _digits(
    classes: list[int] | None, model: str, hidden: list[int] | None, val_fraction: float, **_: Any
) -> Facts:
    n_train, n_val, k = _digits_split(classes, val_fraction)
    widths = (hidden or [64]) if model == "mlp" else []
    n_params = mlp_params(DIGITS_FEATURES, widths, k)
    return Facts(n_train, n_params, has_val=n_val > 0, nbytes=4 * n_params)


def _digits_cnn(classes: list[int] | None, channels: int, val_fraction: float, **_: Any) -> Facts:
    n_train, n_val, k = _digits_split(classes, val_fraction)
    c = channels
    n_params = (9 * c + c) + (9 * c * 2 * c + 2 * c) + (2 * c * 4 * k + k)
    return Facts(n_train, n_params, has_val=n_val > 0, nbytes=4 * n_params)


def _grammar_transformer(
    n_samples: int, vocab: int, context: int, width: int, heads: int, val_fraction: float, **_: Any
) -> Facts:
    check_heads(width, heads)
    n_train, n_val = split_sizes(n_samples, val_fraction)
    w = width
    n_params = (
        vocab * w  # embedding
        + context * w  # positions
        + 3 * 2 * w  # three layer norms
        + (w * 3 * w + 3 * w)  # qkv
        + (w * w + w)  # proj
        + (w * 2 * w + 2 * w)
        + (2 * w * w + w)  # mlp
        + (w * vocab + vocab)  # head
    )
    nbytes = 8 * n_samples * (context + 1) + 8 * vocab**3
    return Facts(n_train, n_params, has_val=n_val > 0, nbytes=nbytes)


DESCRIBE: dict[str, Callable[..., Facts]] = {
    "linear": _linear,
    "logistic": _logistic,
    "quadratic": _quadratic,
    "rosenbrock": _rosenbrock,
    "noisy_quadratic": _noisy_quadratic,
    "two_d_rosenbrock": _two_d_rosenbrock,
    "digits": _digits,
    "digits_cnn": _digits_cnn,
    "grammar_transformer": _grammar_transformer,
}


def describe(name: str, kwargs: dict[str, Any]) -> Facts | None:
    """The facts of built-in problem ``name`` with resolved ``kwargs`` (every parameter given);
    None when they are known only by building it (``file``, plug-ins). Raises ``KeyedError``
    where the builder would."""
    fn = DESCRIBE.get(name)
    return None if fn is None else fn(**kwargs)
