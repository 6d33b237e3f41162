"""A small convolutional network on scikit-learn's bundled 8x8 digits (no download)."""

from __future__ import annotations

from torch import Tensor, nn

from sgdbench.problems.base import Problem
from sgdbench.problems.builtin import cross_entropy_loss, digits_data, split


class DigitsCNN(nn.Module):
    """conv3x3(1→c) ReLU maxpool2 → conv3x3(c→2c) ReLU maxpool2 → linear(2c·2·2 → classes).

    Takes the flat ``[batch, 64]`` rows the data is stored as, so the batchers and the stacked
    engine see the same data layout as the other digits problems.
    """

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4 -> 2x2
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * channels * 4, n_classes)

    def forward(self, x: Tensor | None) -> Tensor:
        assert x is not None
        return self.classifier(self.features(x.reshape(-1, 1, 8, 8)))


def digits_cnn(
    classes: list[int] | None = None,
    channels: int = 8,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Problem:
    """Softmax classification of the 8x8 digits with a two-layer CNN (1.9k parameters with
    8 channels): tests a non-convex loss with the weight sharing, pooling and ReLU dead zones of a
    real vision model, at a size where 7 optimizers x a few lrs run in about a minute on 2 cores.

    Default target loss: 0.15 training cross-entropy (chance is ln 10 ≈ 2.3; a tuned Adam gets
    there in about 10 epochs at batch 32).
    """
    X, y = digits_data(classes)
    n_classes = int(y.max()) + 1
    X, y, X_val, y_val = split(X, y, val_fraction, seed)
    net = DigitsCNN(channels, n_classes)
    return Problem(net, cross_entropy_loss, X, y, X_val, y_val, task="classification")
