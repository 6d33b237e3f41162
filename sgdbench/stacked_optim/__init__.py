"""The stacked engine's optimizers: torch.optim's update rules over a stacked parameter.

A stacked parameter has a leading *member* dimension: ``param[m]`` is run ``m``'s parameters
(the stacked engine keeps all of a model's parameters in one ``[members, n_parameters]`` tensor).
Every hyperparameter that may differ between members (learning rate, momentum, betas, eps, weight
decay, ...) is a tensor of shape ``[members, 1, ...]`` that broadcasts against it; flags that change
the shape of the computation (nesterov, amsgrad, centered, maximize) are shared by the group.

This package is the one home of that math: one ``Algorithm`` block per ``torch.optim`` class, each
with its defaults, its named constants, state and per-step scalars, and its update. Each update
follows the operation order of torch's single-tensor implementation (``_single_tensor_sgd`` and
friends), so a member's trajectory matches ``torch.optim`` to float32 rounding;
``tests/test_stacked.py`` checks each one against ``torch.optim`` running the members one by one.
Quantities that depend on the step count (bias corrections, scheduled and decayed learning rates)
are computed on the host in float64 for a whole window of steps at once, as torch computes them
in Python floats, and reach the device in one transfer per window.

Adding an algorithm (say NAdam) touches one place: write ``class NAdam(Algorithm)`` in
``algorithms.py`` next to the others, with ``elementwise`` and ``flags`` (torch's keywords and
defaults), ``Constants``, ``State`` and ``Scalars`` (the named tensors its update reads), and the
four methods of ``base.Algorithm``. Defining the class registers it; ``spec`` and the grid's
checks learn of it through ``ELEMENTWISE`` and ``FLAGS``. Then add a case to ``OPTIMIZER_CASES``
in ``tests/test_stacked.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sgdbench.stacked_optim import algorithms  # noqa: F401  (importing it registers the blocks)
from sgdbench.stacked_optim.base import Algorithm

# ---------------------------------------------------------------------------------------------
# what the grid checks read (spec.py), derived from the blocks in algorithms.py

ELEMENTWISE: dict[str, dict[str, Any]] = {n: a.elementwise for n, a in Algorithm.registry.items()}
FLAGS: dict[str, dict[str, bool]] = {n: a.flags for n, a in Algorithm.registry.items()}
SUPPORTED = tuple(Algorithm.registry)


def unsupported_reason(class_name: str, kwargs: dict[str, Any]) -> str | None:
    """None if the stacked engine implements ``class_name`` with ``kwargs``; else why not."""
    if class_name not in ELEMENTWISE:
        return f"the stacked engine implements {', '.join(SUPPORTED)}, not {class_name}"
    known = set(ELEMENTWISE[class_name]) | set(FLAGS[class_name])
    extra = sorted(set(kwargs) - known)
    if extra:
        return f"the stacked {class_name} does not implement {', '.join(extra)}"
    return None


def group_flags(class_name: str, kwargs: dict[str, Any]) -> dict[str, bool]:
    """The flags of ``kwargs`` with defaults filled: runs of one group must agree on them."""
    return {k: bool(kwargs.get(k, default)) for k, default in FLAGS.get(class_name, {}).items()}


def _member_values(
    algorithm: Algorithm, kwargs_list: Sequence[dict[str, Any]]
) -> dict[str, np.ndarray]:
    """Each elementwise keyword as a float64 array over the members (torch's Python floats)."""
    out: dict[str, np.ndarray] = {}
    for key, default in algorithm.elementwise.items():
        values = [kw.get(key, default) for kw in kwargs_list]
        if key == "betas":
            out["beta1"] = np.array([float(b[0]) for b in values])
            out["beta2"] = np.array([float(b[1]) for b in values])
        else:
            out[key] = np.array([float(v) for v in values])
    return out


class StackedOptimizer:
    """State and hyperparameters of one optimizer over a stacked parameter ``[members, ...]``.

    ``create`` takes each member's learning rate and keyword arguments (as the run's spec has
    them). ``step(grad, scalars)`` applies one update; ``scalars`` is one entry of
    ``window_scalars``. ``select`` keeps some members (the others leave the stack).
    """

    def __init__(
        self, algorithm: Algorithm, param: Tensor, lrs: np.ndarray, values: dict[str, np.ndarray]
    ) -> None:
        self.algorithm, self.param, self.lrs, self.values = algorithm, param, lrs, values
        self.steps_done = 0
        columns = algorithm.constants(values)
        self.constants = algorithm.Constants(
            **{k: None if v is None else self._column(v) for k, v in columns.items()}
        )
        zeros = lambda: torch.zeros_like(param, memory_format=torch.preserve_format)  # noqa: E731
        self.state = algorithm.init_state(zeros, self.constants)

    @classmethod
    def create(
        cls, class_name: str, param: Tensor, lrs: Sequence[float], kwargs_list: Sequence[dict]
    ) -> StackedOptimizer:
        """The optimizer ``class_name`` over ``param``, one member per entry of ``lrs``."""
        reason = next((r for kw in kwargs_list if (r := unsupported_reason(class_name, kw))), None)
        if reason:
            raise ValueError(reason)
        flag_sets = {tuple(group_flags(class_name, kw).items()) for kw in kwargs_list}
        if len(flag_sets) != 1:
            raise ValueError(f"members disagree on {', '.join(FLAGS[class_name])}")
        algorithm = Algorithm.registry[class_name](dict(flag_sets.pop()))
        values = _member_values(algorithm, kwargs_list)
        return cls(algorithm, param, np.asarray(lrs, dtype=np.float64), values)

    def _column(self, values: np.ndarray) -> Tensor:
        """Per-member values as a float tensor that broadcasts against ``param``."""
        shape = (len(values),) + (1,) * (self.param.dim() - 1)
        return torch.tensor(values, dtype=self.param.dtype, device=self.param.device).view(shape)

    def window_scalars(self, n_steps: int, lr_factors: np.ndarray | None = None) -> list[Any]:
        """Per-step scalars for the next ``n_steps`` updates (the algorithm's ``Scalars``, one
        per step). ``lr_factors``: the schedule's factor per step."""
        factors = np.ones(n_steps) if lr_factors is None else np.asarray(lr_factors, np.float64)
        lr = factors[:, None] * self.lrs[None, :]  # [n, members]
        t = (self.steps_done + 1 + np.arange(n_steps, dtype=np.float64))[:, None]  # 1-based
        columns = {
            k: v for k, v in self.algorithm.scalars(lr, t, self.values).items() if v is not None
        }
        names = list(columns)
        table = np.stack([columns[k] for k in names], axis=0)  # [K, n, members]
        shape = table.shape + (1,) * (self.param.dim() - 1)
        tensor = torch.tensor(table, dtype=self.param.dtype).view(shape)
        tensor = tensor.to(self.param.device, non_blocking=True)  # one transfer per window
        per_name = [tensor[k].unbind(0) for k in range(len(names))]  # views, no copies
        make = self.algorithm.Scalars
        return [make(**dict(zip(names, row, strict=True))) for row in zip(*per_name, strict=True)]

    def step(self, grad: Tensor, scalars: Any) -> None:
        """One update of every member (``grad``: the stacked gradient, not requiring grad;
        ``scalars``: this step's entry of ``window_scalars``)."""
        self.algorithm.update(self.param, grad, self.state, self.constants, scalars)
        self.steps_done += 1

    def select(self, keep: Tensor, param: Tensor) -> None:
        """Keep only the members ``keep`` (indices); ``param`` is the compacted parameter."""
        self.param = param
        self.state = self.state.select(keep)
        self.constants = self.constants.select(keep)
        idx = keep.cpu().numpy()
        self.lrs = self.lrs[idx]
        self.values = {k: v[idx] for k, v in self.values.items()}
