"""DeepOBS's stochastic toy problems, written from their published definitions.

Schneider, Balles & Hennig, "DeepOBS: A Deep Learning Optimizer Benchmark Suite" (ICLR 2019):
- ``quadratic_deep``: per-sample loss 0.5 (θ - x)ᵀ Q (θ - x) in 100 dimensions, Q = Rᵀ D R with a
  Haar-distributed rotation R and 90 eigenvalues drawn from U(0, 1), 10 from U(30, 60);
  1,000 training samples x ~ N(0, 0.6² I), a separate 1,000-sample test set, θ starts at ones,
  and an epoch drops its last partial batch.
- ``two_d_rosenbrock``: per-sample loss (1 - u)² + 100 (v - u²)² + u·x + v·y with 10,000 noise
  pairs (x, y) ~ N(0, 1), start (u, v) = (-0.5, 1.5); its test set is all zeros, so the test loss
  is the noise-free Rosenbrock value.

Both keep their test set in the problem's validation slot: sgdbench's ``val_loss`` (and the
runs table's ``final_val_loss``) is DeepOBS's test loss. DeepOBS draws its data with NumPy and
its rotation with its own algorithm: with the default seed, ``noisy_quadratic`` has DeepOBS's
eigenvalues, training and test samples, and a different (equally Haar-distributed) rotation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from sgdbench.problems.base import Problem
from sgdbench.problems.builtin import mean_loss


def _normal(seed: int, std: float, shape: tuple[int, ...]) -> Tensor:
    """``N(0, std²)`` draws from NumPy's legacy ``RandomState(seed)``, as DeepOBS draws its data:
    with DeepOBS's seeds (42 for training, 43 for testing) these are its very samples. The
    legacy stream is frozen by NumPy's compatibility policy, so the values never change."""
    draws = np.random.RandomState(seed).normal(0.0, std, shape)
    return torch.from_numpy(draws.astype(np.float32))


def haar_rotation(dim: int, rng: np.random.RandomState) -> np.ndarray:
    """A ``dim x dim`` orthogonal matrix drawn from the Haar (uniform) measure."""
    from scipy.stats import ortho_group  # scipy comes with scikit-learn

    return ortho_group.rvs(dim, random_state=rng)


class NoisyQuadraticModel(nn.Module):
    """Per-sample loss 0.5 (θ - x)ᵀ Q (θ - x); θ starts at ones as in DeepOBS."""

    Q: Tensor  # a buffer

    def __init__(self, Q: Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.ones(Q.shape[0]))
        self.register_buffer("Q", Q)

    def forward(self, x: Tensor | None) -> Tensor:
        assert x is not None
        d = self.theta - x
        return 0.5 * ((d @ self.Q) * d).sum(dim=1)


def noisy_quadratic(
    dim: int = 100,
    n_samples: int = 1000,
    n_test: int = 1000,
    noise: float = 0.6,
    drop_last: bool = True,
    seed: int = 42,
) -> Problem:
    """DeepOBS's ``quadratic_deep``: tests ill-conditioning (condition number ~10³ from a
    deep-learning-like spectrum) under gradient noise, on a convex problem.

    The training loss cannot fall below the samples' own spread: 0.5 tr(Q S) with S their
    covariance, about 86 for the defaults (DeepOBS's SGD, momentum and Adam end near 84.6 on the
    training set, 87.5 on the test set). Default target loss: 90 (within ~5% of that floor).
    """
    # One stream, as DeepOBS: the eigenvalues, then the rotation.
    rng = np.random.RandomState(seed)
    n_large = max(1, dim // 10)
    eigenvalues = np.concatenate(
        [rng.uniform(0.0, 1.0, dim - n_large), rng.uniform(30.0, 60.0, n_large)]
    )
    R = haar_rotation(dim, rng)
    Q = torch.from_numpy(R.T @ np.diag(eigenvalues) @ R).float()
    X = _normal(seed, noise, (n_samples, dim))
    X_test = _normal(seed + 1, noise, (n_test, dim)) if n_test else None
    return Problem(
        NoisyQuadraticModel(Q), mean_loss, X, None, X_test, None, "regression", drop_last=drop_last
    )


class NoisyRosenbrockModel(nn.Module):
    """Per-sample loss (1 - u)² + 100 (v - u²)² + u·x + v·y at the point ``p = (u, v)``."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor([-0.5, 1.5]))

    def forward(self, xy: Tensor | None) -> Tensor:
        assert xy is not None
        u, v = self.p[0], self.p[1]
        return (1 - u) ** 2 + 100 * (v - u**2) ** 2 + xy @ self.p


def two_d_rosenbrock(
    n_samples: int = 10000, noise: float = 1.0, drop_last: bool = True, seed: int = 42
) -> Problem:
    """DeepOBS's ``two_d_rosenbrock``: tests a curved, badly scaled valley (non-convex) with
    additive gradient noise. Unlike ``rosenbrock`` it is a data problem: each sample tilts the
    function by u·x + v·y, so a minibatch gradient is the true one plus noise of variance
    ``noise² / batch_size``.

    Minimum 0 at (1, 1) for the noise-free function (the test loss); from the start
    (-0.5, 1.5) the loss is 158.5. Default target loss: 0.1 on the training set.
    """
    # DeepOBS draws all x, then all y, from one stream.
    X = _normal(seed, noise, (2, n_samples)).T.contiguous()
    # DeepOBS's test set is zeros: one row gives the same mean.
    X_test = torch.zeros(1, 2)
    return Problem(
        NoisyRosenbrockModel(), mean_loss, X, None, X_test, None, "regression", drop_last=drop_last
    )
