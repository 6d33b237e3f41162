"""The public ``Problem`` type that built-in problems and plug-ins return."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

Task = Literal["regression", "classification", "function"]
LossFn = Callable[[Tensor, Tensor | None], Tensor]


@dataclass
class Problem:
    """One trainable problem: a model, its loss, and the data it is trained on.

    - ``model(X_batch)`` returns outputs and ``loss_fn(outputs, y_batch)`` a scalar mean loss.
      Function problems (``task="function"``) have no data: ``model(None)`` returns the objective
      and ``loss_fn`` receives ``None`` as the target.
    - ``y`` may be ``None`` when the loss needs only inputs (e.g. the noisy quadratic).
    - ``X_val``/``y_val``: optional held-out data; classification problems get accuracy on it.
    - ``params``: what the optimizer updates; ``None`` means ``model.parameters()``. Plug-ins
      rarely need it; sgdbench checks that these are the parameters that receive gradients.
    - ``drop_last``: an epoch ends before its last, short batch (as a DataLoader with
      ``drop_last=True``): ``n_samples // batch_size`` steps per epoch instead of rounding up.
    """

    model: nn.Module
    loss_fn: LossFn
    X: Tensor | None = None
    y: Tensor | None = None
    X_val: Tensor | None = None
    y_val: Tensor | None = None
    task: Task = "regression"
    params: Iterable[nn.Parameter] | None = None
    drop_last: bool = False

    def __post_init__(self) -> None:
        if self.task not in ("regression", "classification", "function"):
            raise ValueError(
                f"task must be regression, classification or function, got {self.task!r}"
            )
        if self.task != "function":
            if self.X is None:
                raise ValueError("a data problem needs X (use task='function' for none)")
            if self.y is not None and len(self.y) != len(self.X):
                raise ValueError(f"X has {len(self.X)} rows but y has {len(self.y)}")
        if self.params is not None:
            self.params = list(self.params)

    @property
    def n_samples(self) -> int:
        """Number of training samples; 1 for function problems (every step sees everything)."""
        return 1 if self.X is None else len(self.X)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters handed to the optimizer."""
        params = self.params if self.params is not None else self.model.parameters()
        return [p for p in params if p.requires_grad]

    def to(self, device: torch.device) -> Problem:
        """Move model and data to ``device`` in place (data once, never per step)."""
        self.model.to(device)

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        self.X, self.y = move(self.X), move(self.y)
        self.X_val, self.y_val = move(self.X_val), move(self.y_val)
        return self
