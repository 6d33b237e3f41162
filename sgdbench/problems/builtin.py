"""Built-in problems. Data comes from an explicit generator seeded by the problem's own
``seed``; model initialisation uses torch's global RNG, which the engine seeds per run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sgdbench.problems.base import Problem
from sgdbench.problems.facts import check_classes, check_linear, split_sizes


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mlp(n_in: int, hidden: list[int], n_out: int) -> nn.Module:
    """A ReLU MLP; ``hidden=[]`` gives a linear layer."""
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def mse_loss(out: Tensor, y: Tensor | None) -> Tensor:
    """Mean squared error of a one-output model against a 1-D target."""
    assert y is not None
    return F.mse_loss(out.squeeze(-1), y)


def bce_loss(out: Tensor, y: Tensor | None) -> Tensor:
    """Logistic loss of a one-logit model against 0/1 targets."""
    assert y is not None
    return F.binary_cross_entropy_with_logits(out.squeeze(-1), y)


def cross_entropy_loss(out: Tensor, y: Tensor | None) -> Tensor:
    assert y is not None
    return F.cross_entropy(out, y)


def split(
    X: Tensor, y: Tensor, val_fraction: float, seed: int
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Seeded train/validation split; no validation set when the fraction rounds to zero."""
    _, n_val = split_sizes(len(X), val_fraction)
    if n_val == 0:
        return X, y, None, None
    order = torch.randperm(len(X), generator=_generator(seed + 1))
    val, train = order[:n_val], order[n_val:]
    return X[train], y[train], X[val], y[val]


def linear(
    n_samples: int = 1000,
    n_features: int = 10,
    noise: float = 0.1,
    weights: list[float] | None = None,
    bias: float | None = None,
    x_low: float | None = None,
    x_high: float | None = None,
    seed: int = 0,
) -> Problem:
    g = _generator(seed)
    check_linear(n_features, weights, x_low, x_high)
    if x_low is not None and x_high is not None:
        X = x_low + (x_high - x_low) * torch.rand(n_samples, n_features, generator=g)
    else:
        X = torch.randn(n_samples, n_features, generator=g)
    w = torch.tensor(weights) if weights is not None else torch.randn(n_features, generator=g)
    b = bias if bias is not None else float(torch.randn(1, generator=g))
    y = X @ w + b + noise * torch.randn(n_samples, generator=g)
    return Problem(nn.Linear(n_features, 1), mse_loss, X, y, task="regression")


def logistic(
    n_samples: int = 1000, n_features: int = 10, val_fraction: float = 0.2, seed: int = 0
) -> Problem:
    g = _generator(seed)
    X = torch.randn(n_samples, n_features, generator=g)
    w = torch.randn(n_features, generator=g) * 2.0
    y = torch.bernoulli(torch.sigmoid(X @ w), generator=g)
    X, y, X_val, y_val = split(X, y, val_fraction, seed)
    return Problem(nn.Linear(n_features, 1), bce_loss, X, y, X_val, y_val, task="classification")


class FunctionModel(nn.Module):
    """A point ``x`` in parameter space and an objective ``f(x)``; the input is ignored."""

    def __init__(self, start: Tensor, objective: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.x = nn.Parameter(start.clone())
        self.objective = objective

    def forward(self, inputs: Tensor | None = None) -> Tensor:
        return self.objective(self.x)


def identity_loss(out: Tensor, y: Tensor | None) -> Tensor:
    """For function problems the model's output already is the loss."""
    return out


def sum_of_squares(x: Tensor) -> Tensor:
    return (x * x).sum()


def quadratic(dim: int = 1) -> Problem:
    # Default start: a seeded N(0, 1) draw (the engine seeds the RNG per run); init overrides.
    return Problem(FunctionModel(torch.randn(dim), sum_of_squares), identity_loss, task="function")


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Problem:
    def f(p: Tensor) -> Tensor:
        return (a - p[0]) ** 2 + b * (p[1] - p[0] ** 2) ** 2

    return Problem(FunctionModel(torch.tensor([-0.5, 1.5]), f), identity_loss, task="function")


def mean_loss(out: Tensor, y: Tensor | None) -> Tensor:
    return out.mean()


def _digits_arrays() -> tuple[Any, Any]:
    """scikit-learn's bundled digits.csv.gz read as ``load_digits`` reads it (``np.loadtxt``),
    without importing sklearn, which imports pandas: 1 s of CPU, a third of a digits sweep's
    process beyond torch. ``load_digits`` itself where the file is not found."""
    import gzip
    import importlib.util
    from pathlib import Path

    import numpy as np

    found = importlib.util.find_spec("sklearn")
    origin = found.origin if found is not None else None
    path = Path(origin).parent / "datasets" / "data" / "digits.csv.gz" if origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits  # ships with scikit-learn: no download

        bunch = load_digits()
        return bunch.data, bunch.target
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int, copy=False)


def digits_data(classes: list[int] | None = None) -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled 8x8 digits as ``X [n, 64]`` in [0, 1] and labels ``0..k-1``
    (``classes`` keeps only those digits, relabelled in sorted order)."""
    features, target = _digits_arrays()
    X = torch.tensor(features, dtype=torch.float32) / 16.0
    y = torch.tensor(target, dtype=torch.long)
    check_classes(classes)
    if classes is not None:
        keep = torch.isin(y, torch.tensor(classes))
        X, y = X[keep], y[keep]
        remap = {c: i for i, c in enumerate(sorted(set(classes)))}
        y = torch.tensor([remap[int(c)] for c in y], dtype=torch.long)
    return X, y


def digits(
    classes: list[int] | None = None,
    model: str = "linear",
    hidden: list[int] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Problem:
    X, y = digits_data(classes)
    n_classes = int(y.max()) + 1
    X, y, X_val, y_val = split(X, y, val_fraction, seed)
    net = mlp(X.shape[1], (hidden or [64]) if model == "mlp" else [], n_classes)
    return Problem(net, cross_entropy_loss, X, y, X_val, y_val, task="classification")
