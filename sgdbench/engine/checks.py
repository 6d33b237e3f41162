"""The checks that end a run, as plain functions both engines call (the stacked engine once per
member): stalled, diverged, early stopping, target reached, out of time.

Each returns a ``Verdict`` when the run must stop, else None. The order in which an engine asks
them at a window end is fixed by ``RunState`` (``check_losses``, then ``check_evaluation``, then
``check_clock``), so a member of a stack stops exactly where the same run on its own would.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sgdbench.problems.base import Problem
from sgdbench.spec import RunSpec

# The stacked engine knows only that a member's parameters did not move; the eager engine can
# say why (``stall_message``).
STALL_MESSAGE = (
    "stalled: no parameter changed in the first update (a zero gradient, e.g. a stationary "
    'start such as init = "zeros" at a minimum, or lr 0 in effect)'
)


@dataclass(frozen=True)
class Verdict:
    """How a run ends: its status and why (``ok`` with a message: stopped early on purpose)."""

    status: str
    message: str = ""


@dataclass
class Patience:
    """Early stopping's count: evaluations since the validation loss last improved."""

    best: float = math.inf
    since: int = 0

    def update(self, value: float) -> None:
        if value < self.best:
            self.best, self.since = value, 0
        else:
            self.since += 1


def divergence(losses: np.ndarray, offset: int, first_loss: float, factor: float) -> Verdict | None:
    """``diverged`` at the first non-finite loss, or loss above ``factor`` x the first loss
    (only when the first loss is positive); ``losses[k]`` is the loss of step ``offset + k``."""
    bad = ~np.isfinite(losses)
    if first_loss > 0 and math.isfinite(first_loss):
        bad |= losses > factor * first_loss
    if not bad.any():
        return None
    k = int(np.argmax(bad))
    value = float(losses[k])
    why = (
        "non-finite"
        if not math.isfinite(value)
        else f"above {factor:g} x the first ({first_loss:.3g})"
    )
    return Verdict("diverged", f"loss {value:.3g} at step {offset + k} ({why})")


def evaluation(
    result: dict[str, float], spec: RunSpec, step: int, patience: Patience
) -> Verdict | None:
    """After a full-data evaluation at ``step``: early stopping (``patience`` counts), then the
    target loss when the spec stops there."""
    if spec.early_stopping_patience and "val_loss" in result:
        patience.update(result["val_loss"])
        if patience.since >= spec.early_stopping_patience:
            return Verdict(
                "ok",
                f"early stopping: validation loss did not improve for {patience.since} evaluations",
            )
    target = spec.target_loss if spec.stop_at_target else None
    if target is not None and result["train_loss"] <= target:
        return Verdict("ok", f"reached target_loss {target:g} at step {step}")
    return None


def timeout(spec: RunSpec, clock: float, step: int) -> Verdict | None:
    """``timeout`` once the training clock passed ``max_seconds`` with steps left to do."""
    if spec.max_seconds is not None and clock >= spec.max_seconds and step < spec.steps:
        done = f"{step} of {spec.steps} steps"
        return Verdict("timeout", f"max_seconds {spec.max_seconds:g} reached after {done}")
    return None


def stall_message(
    problem: Problem, params: list[torch.nn.Parameter], before: list[Tensor]
) -> str | None:
    """None if some trainable parameter changed in the first update; else why nothing did."""
    if any(not torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True)):
        return None
    names = {id(p): n for n, p in problem.model.named_parameters()}
    label = [names.get(id(p), f"<parameter {i} not in the model>") for i, p in enumerate(params)]
    no_grad = [n for n, p in zip(label, params, strict=True) if p.grad is None]
    zero_grad = [
        n
        for n, p in zip(label, params, strict=True)
        if p.grad is not None and not bool(p.grad.abs().sum() > 0)
    ]
    model_got_grad = [
        n
        for n, p in problem.model.named_parameters()
        if p.grad is not None and id(p) not in {id(q) for q in params}
    ]
    shown = ", ".join(label[:5]) + (" ..." if len(label) > 5 else "")
    if model_got_grad:
        return (
            f"stalled: the optimizer's parameters ({shown}) are not the model's; the model's "
            f"{', '.join(model_got_grad[:5])} got gradients instead. Likely the optimizer was "
            "built over a copy (copy.deepcopy after creating the optimizer)"
        )
    if len(no_grad) == len(params):
        return (
            f"stalled: no gradient reached {shown}. Likely the forward uses a copy of the "
            "model (copy.deepcopy before the update) or detaches the parameters"
        )
    if len(zero_grad) + len(no_grad) == len(params):
        return (
            f"stalled: the gradient of {shown} is exactly zero: a stationary start "
            '(e.g. init = "zeros" at a minimum) or dead units'
        )
    return (
        f"stalled: {shown} got gradients but did not change: lr is 0 in effect, or the "
        "optimizer holds other parameters than those the loss uses"
    )


def update_cosine(snapshots: list[Tensor]) -> float:
    """Mean cosine between successive updates θ[k+1] - θ[k]: near -1 when the iterate bounces
    back and forth across a valley, near +1 when it moves steadily. NaN when undefined."""
    updates = [b - a for a, b in itertools.pairwise(snapshots)]
    cosines = [
        float(torch.dot(u, v) / (u.norm() * v.norm()))
        for u, v in itertools.pairwise(updates)
        if u.norm() > 0 and v.norm() > 0
    ]
    return sum(cosines) / len(cosines) if cosines else math.nan
