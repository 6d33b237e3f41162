"""The learning-rate range test (``sgdbench lr-find``) and its stacked variant (``--sweep``).

Range test: one run whose lr grows exponentially from ``start`` to ``end`` over ``steps`` steps;
the minibatch loss is recorded raw and smoothed (an EMA with bias correction, as fastai's
``LRFinder`` smooths it) and the test stops once the smoothed loss exceeds ``stop_factor`` times
its minimum. Suggestions follow named rules over the smoothed curve.

Sweep: ``k`` log-spaced learning rates, each trained with a constant lr for a short budget, all
at once on the stacked engine; the answer is the full-data loss at the end against the lr.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sgdbench.spec import RunSpec

DEFAULT_BETA = 0.98  # fastai's smoothing: about the last 50 steps weigh in


def exponential_lrs(start: float, end: float, steps: int) -> np.ndarray:
    """``steps`` learning rates from ``start`` to ``end`` (both included), a constant ratio."""
    if not 0 < start < end:
        raise ValueError(f"need 0 < start < end, got start={start}, end={end}")
    if steps < 2:
        raise ValueError(f"need at least 2 steps, got {steps}")
    return start * (end / start) ** (np.arange(steps) / (steps - 1))


class Smoother:
    """Exponential moving average with bias correction (the first values are not pulled to 0)."""

    def __init__(self, beta: float = DEFAULT_BETA) -> None:
        self.beta, self.avg, self.count = beta, 0.0, 0

    def add(self, value: float) -> float:
        """Take the next value; return the smoothed value so far."""
        self.count += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * value
        return self.avg / (1 - self.beta**self.count)


def smooth(losses: np.ndarray, beta: float = DEFAULT_BETA) -> np.ndarray:
    """The smoothed curve of ``losses`` (``Smoother`` applied in order)."""
    smoother = Smoother(beta)
    return np.asarray([smoother.add(float(v)) for v in losses], dtype=np.float64)


def suggest(lrs: np.ndarray, smoothed: np.ndarray, skip_start: int = 10) -> dict[str, float]:
    """Named suggestions from a recorded curve (fastai's rules):

    - ``steepest``: the lr where the smoothed loss falls fastest per unit of log(lr);
    - ``minimum/10``: a tenth of the lr at the smoothed loss's minimum.

    The first ``skip_start`` points are left out (when the curve is longer than twice that): the
    smoothed loss there rests on a handful of batches, and their noise looks like a slope.
    """
    if len(lrs) > 2 * skip_start:
        lrs, smoothed = lrs[skip_start:], smoothed[skip_start:]
    finite = np.isfinite(smoothed)
    lrs, smoothed = lrs[finite], smoothed[finite]
    out: dict[str, float] = {}
    if len(lrs) == 0:
        return out
    out["minimum/10"] = float(lrs[int(np.argmin(smoothed))] / 10)
    if len(lrs) >= 2:
        slope = np.diff(smoothed) / np.diff(np.log(lrs))
        out["steepest"] = float(lrs[int(np.argmin(slope))])
    return out


@dataclass
class RangeTest:
    """A recorded range test: lr, raw and smoothed loss per step, where it stopped and why."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    stopped_at_lr: float | None  # the lr of the step that blew up; None: ran to the end
    suggestions: dict[str, float] = field(default_factory=dict)

    @property
    def min_loss_lr(self) -> float:
        """The lr at the smoothed loss's minimum."""
        return float(self.lrs[int(np.nanargmin(self.smoothed))])


def blow_up(smoothed: float, best: float, stop_factor: float) -> bool:
    """True when the test should stop: a non-finite loss, or one above ``stop_factor`` x best."""
    return not math.isfinite(smoothed) or smoothed > stop_factor * best


def range_test(
    spec: RunSpec,
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    stop_factor: float = 4.0,
    beta: float | None = None,
) -> RangeTest:
    """Train ``spec``'s configuration with an exponentially growing lr (``spec.lr`` and its
    schedule are ignored) and record the loss at each lr. Batches, initialisation and the
    optimizer are the eager engine's, so the test sees what a run of the grid would see.

    ``beta``: the smoothing factor; by default ``DEFAULT_BETA`` for minibatches and 0 (raw) for
    full-batch runs, whose loss has no sampling noise to average and whose blow-up a lagging
    average would only report late."""
    from sgdbench.engine.batches import Batches
    from sgdbench.engine.context import resolve_device, run_context
    from sgdbench.engine.eager import make_update
    from sgdbench.optimizers import build_optimizer, needs_closure
    from sgdbench.problems.factory import build_for_run

    if stop_factor <= 1:
        raise ValueError(f"stop_factor must be > 1, got {stop_factor}")
    lrs = exponential_lrs(start, end, steps)
    if beta is None:
        beta = 0.0 if spec.full_batch else DEFAULT_BETA
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    device, why = resolve_device(spec.device)
    if device is None:
        raise ValueError(why)
    with run_context(spec, device):  # the run's seeds and thread count, restored after
        problem = build_for_run(spec)
        problem.to(device)
        optimizer, _ = build_optimizer(
            spec.optimizer_class,
            problem.trainable_parameters(),
            float(lrs[0]),
            spec.optimizer_kwargs,
            spec.optimizer_impl,
            device,
        )
        update = make_update(problem, optimizer, needs_closure(spec.optimizer_class))
        batches = Batches(problem, spec, device)
        losses: list[float] = []
        smoothed: list[float] = []
        smoother, best, stopped_at = Smoother(beta), math.inf, None
        problem.model.train()
        for step, lr in enumerate(lrs):
            for group in optimizer.param_groups:
                group["lr"] = float(lr)
            loss = update(*batches(step)).item()
            losses.append(loss)
            value = smoother.add(loss)
            smoothed.append(value)
            if step > 0 and blow_up(value, best, stop_factor):
                stopped_at = float(lr)
                break
            best = min(best, value)
    recorded = lrs[: len(losses)]
    smoothed_arr = np.asarray(smoothed)
    # Suggestions ignore the blow-up step itself: its loss says "too far", not "steep".
    stop = len(losses) - 1 if stopped_at is not None else len(losses)
    return RangeTest(
        lrs=recorded,
        losses=np.asarray(losses),
        smoothed=smoothed_arr,
        stopped_at_lr=stopped_at,
        suggestions=suggest(recorded[:stop], smoothed_arr[:stop]),
    )


@dataclass
class SweepResult:
    """Final full-data loss (NaN when diverged) and status per learning rate."""

    lrs: np.ndarray
    final_losses: np.ndarray
    statuses: list[str]
    steps: int

    @property
    def best_lr(self) -> float:
        """The lr with the lowest final loss among the runs that did not diverge."""
        return float(self.lrs[int(np.nanargmin(self.final_losses))])


def sweep_specs(spec: RunSpec, lrs: np.ndarray, steps: int) -> list[RunSpec]:
    """``spec`` at each lr, constant schedule, ``steps`` steps, evaluated at the end only,
    on the stacked engine."""
    from sgdbench.schedules import resolve

    return [
        dataclasses.replace(
            spec,
            lr=float(lr),
            steps=steps,
            epochs=None,
            eval_every=0,
            schedule=resolve("constant", {}, steps),
            engine="stacked",
            stop_at_target=False,
            early_stopping_patience=0,
            checkpoint_every=0,
        )
        for lr in lrs
    ]


def lr_sweep(
    spec: RunSpec, *, start: float = 1e-5, end: float = 10.0, k: int = 64, steps: int = 100
) -> SweepResult:
    """Train ``k`` log-spaced learning rates at once on the stacked engine for ``steps`` steps."""
    from sgdbench.engine.stacked import run_group

    lrs = exponential_lrs(start, end, k)
    trajs = run_group(sweep_specs(spec, lrs, steps))
    finals = []
    for traj in trajs:
        evals = traj.evals.get("train_loss") or []
        last = evals[-1] if evals else math.nan
        finals.append(last if traj.status == "ok" and math.isfinite(last) else math.nan)
    failed = [t for t in trajs if t.status == "failed"]
    if failed:
        raise RuntimeError(failed[0].message)
    return SweepResult(
        lrs=lrs, final_losses=np.asarray(finals), statuses=[t.status for t in trajs], steps=steps
    )
