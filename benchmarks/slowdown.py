"""A known engine slowdown, to measure whether the benchmark checks catch one.

``SGDBENCH_BENCH_SLOWDOWN=1.5`` makes every engine run of the benchmarks
(``workloads.engine_epoch``, used by ``make bench-gate`` and the epoch benchmarks of
``make bench-compare``) train a plug-in problem whose forward does half again as much work: every
second training step, the forward also runs one whole extra training step (forward, backward,
SGD + momentum update) on a private copy of the model. So the engine does 1.5 steps of work per
step, of the same kind as the real one. The model, its outputs and so the losses are unchanged
(the trajectory is bitwise the same). No shipped code path changes: the plain loops and the
package never read the variable.

A spin loop of calibrated CPU time was tried first and rejected: interleaving it with the steps
slowed the steps themselves (2-2.5× in all instead of 1.5× on this VM).
"""

from __future__ import annotations

import copy
import os
from dataclasses import replace

import torch
from torch import Tensor, nn

from sgdbench.problems.base import Problem
from sgdbench.spec import RunSpec

ENV = "SGDBENCH_BENCH_SLOWDOWN"
PROBLEM = "benchmarks.slowdown:regression"


def factor_from_env() -> float:
    """The slowdown factor asked for in ``SGDBENCH_BENCH_SLOWDOWN`` (1.0 when unset).

    Raises ``ValueError`` (one line, naming the variable) for anything but a number >= 1.
    """
    text = os.environ.get(ENV, "").strip()
    if not text:
        return 1.0
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"{ENV}: must be a number >= 1, got {text!r}") from None
    if not factor >= 1.0:  # also rejects NaN
        raise ValueError(f"{ENV}: must be a number >= 1, got {text!r}")
    return factor


class SlowerForward(nn.Module):
    """``inner``'s forward; in training, ``factor - 1`` extra training steps per step (on
    average) on a private copy of ``inner``, which the run never sees."""

    def __init__(self, inner: nn.Module, factor: float) -> None:
        super().__init__()
        self.inner = inner
        self.factor = factor
        shadow = copy.deepcopy(inner)
        # kept in a tuple so that it is not a submodule: its parameters are not the run's
        self._shadow = (shadow,)
        self._shadow_optimizer = torch.optim.SGD(
            shadow.parameters(), lr=1e-9, momentum=0.9, foreach=False
        )
        self._owed_steps = 0.0

    def forward(self, x: Tensor) -> Tensor:
        out = self.inner(x)
        if torch.is_grad_enabled():  # a training step, not an evaluation
            self._owed_steps += self.factor - 1.0
            while self._owed_steps >= 1.0:
                self._owed_steps -= 1.0
                self._shadow_step(x)
        return out

    def _shadow_step(self, x: Tensor) -> None:
        (shadow,) = self._shadow
        loss = shadow(x).square().mean()
        for p in shadow.parameters():
            p.grad = None
        loss.backward()
        self._shadow_optimizer.step()


def regression(slowdown: float = 1.0, **kwargs) -> Problem:
    """``workloads.regression(**kwargs)`` with a forward ``slowdown`` times as expensive."""
    from benchmarks import workloads

    problem = workloads.regression(**kwargs)
    problem.model = SlowerForward(problem.model, slowdown)
    return problem


def regression_from_env(**kwargs) -> Problem:
    """``regression(**kwargs)`` slowed by ``SGDBENCH_BENCH_SLOWDOWN`` (1.0 when unset): the
    same grid, and so the same run ids and configurations, runs slower or not, which is what
    ``sgdbench compare`` must tell apart from noise (``benchmarks/compare_trials.py``)."""
    return regression(slowdown=factor_from_env(), **kwargs)


def slowed_spec(spec: RunSpec, factor: float) -> RunSpec:
    """``spec`` on the slowed plug-in: same data, initialisation and optimizer, slower steps."""
    kwargs = {**spec.problem_kwargs, "slowdown": factor}
    return replace(spec, problem=PROBLEM, problem_kwargs=kwargs)
