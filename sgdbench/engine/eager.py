"""The eager engine: one model, a real ``torch.optim`` optimizer, no host sync per step.

The run is cut into *windows* (see ``window_ends``). Inside a window the loop only does
batch → forward → backward → step and keeps the loss on the device. At each window end the
clock is read (after synchronizing on CUDA), the window's losses are copied to the host in one
transfer, and the checks run: stalled after the first update, divergence, evaluation and target,
time budget. So a diverged run may run up to ``CHUNK_STEPS - 1`` steps past the blow-up; those
losses are recorded as they were.

Timing: the clock is read only at window ends, so a step's ``time_s`` is interpolated linearly
inside its window (steps of one window take equal time). ``train_time_s`` and the window totals
are exact. The first ``WARMUP_STEPS`` steps are timed as their own window (``warmup_s``).

Per-step cost, measured with ``benchmarks/`` (docs/performance.md): each line of the hot loop
is the cheapest form we found that keeps trajectories bitwise equal to a plain PyTorch loop:
- batches are contiguous slices of a per-epoch shuffled copy of the data (one gather per epoch,
  not one per step);
- gradients are reset with ``p.grad = None`` (what ``zero_grad(set_to_none=True)`` does, without
  its profiler and dynamo wrappers: ~10% of a tiny model's step on CPU);
- a learning-rate schedule is a precomputed per-step list written into the param groups
  (``LambdaLR.step`` costs ~10 µs a step), the same numbers the ``lr`` column records;
- losses are appended to a Python list of device tensors and stacked once per window (cheaper
  than writing each into a preallocated device buffer, an indexed copy per step).

The window loop, the checks and the run's bookkeeping are shared with the stacked engine
(``windows``, ``checks``, ``state``, ``context``); this module owns only what is eager: the
model and ``torch.optim`` optimizer, one update, and their checkpointed state.

``SGDBENCH_SYNC_DEBUG=1`` runs the step loop of CUDA runs under
``torch.cuda.set_sync_debug_mode("error")``: any host synchronization in a step is an error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sgdbench import checkpoint, optimizers, schedules
from sgdbench.engine import checks
from sgdbench.engine.batches import Batches
from sgdbench.engine.checks import Verdict
from sgdbench.engine.context import (
    SYNC_DEBUG_ENV,
    StopRequested,
    WindowClock,
    resolve_device,
    run_info,
    sync_debug_guard,
    train_unit,
)
from sgdbench.engine.crossing import TargetSearch
from sgdbench.engine.evaluation import evaluate
from sgdbench.engine.state import RunState
from sgdbench.engine.trajectory import Trajectory
from sgdbench.engine.windows import CHUNK_STEPS, WARMUP_STEPS, is_eval_step, window_ends
from sgdbench.lazy_dynamo import plain_step
from sgdbench.problems.base import Problem
from sgdbench.problems.factory import build_for_run
from sgdbench.spec import RunSpec

_sync_debug_guard = sync_debug_guard  # the name tests/test_cuda.py knows


def make_update(
    problem: Problem, optimizer: torch.optim.Optimizer, closure_style: bool
) -> Callable[[Tensor | None, Tensor | None], Tensor]:
    """One optimizer update on a batch; returns the batch loss computed before the update."""
    model, loss_fn = problem.model, problem.loss_fn
    params = [p for group in optimizer.param_groups for p in group["params"]]
    step = plain_step(optimizer)  # optimizer.step minus its torch._dynamo import

    def update(xb: Tensor | None, yb: Tensor | None) -> Tensor:
        loss = loss_fn(model(xb), yb)
        for p in params:  # optimizer.zero_grad(set_to_none=True) minus its wrappers' cost
            p.grad = None
        loss.backward()
        step()
        return loss

    def update_with_closure(xb: Tensor | None, yb: Tensor | None) -> Tensor:
        def closure() -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            return loss

        return step(closure)  # type: ignore[return-value]  # LBFGS: the first loss

    return update_with_closure if closure_style else update


class EagerTraining:
    """The eager run's model and optimizer on their device: the state a checkpoint keeps
    besides ``RunState`` (model, optimizer, RNGs; the data position is the step)."""

    def __init__(self, problem: Problem, optimizer: torch.optim.Optimizer, device: torch.device):
        self.problem, self.optimizer, self.device = problem, optimizer, device
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    def flat_parameters(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params]).double().cpu()

    def state_dict(self) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        return {
            "model": self.problem.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if cuda else torch.empty(0),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Into the freshly built model and optimizer: nothing survives in memory between tries."""
        self.problem.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng_cpu"])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(saved["rng_cuda"], self.device)


class EagerReplay:
    """``crossing.Replayable`` for one eager run: a step exactly as the hot loop takes it."""

    def __init__(
        self,
        training: EagerTraining,
        update: Callable[[Tensor | None, Tensor | None], Tensor],
        batch: Batches,
        lr_at: list[float] | None,
    ) -> None:
        self.training, self.update, self.batch, self.lr_at = training, update, batch, lr_at

    def snapshot(self) -> dict[str, Any]:
        # The parameters too: a plug-in's optimizer may hold parameters outside its model.
        params = [p.detach().clone() for p in self.training.params]
        return {**copy.deepcopy(self.training.state_dict()), "params": params}

    @torch.no_grad()
    def restore(self, snapshot: dict[str, Any]) -> None:
        self.training.load_state_dict(snapshot)
        for p, saved in zip(self.training.params, snapshot["params"], strict=True):
            p.copy_(saved)

    def replay_step(self, step: int) -> np.ndarray:
        if self.lr_at is not None:
            for group in self.training.optimizer.param_groups:
                group["lr"] = self.lr_at[step]
        loss = self.update(*self.batch(step))
        return loss.detach().reshape(1).float().cpu().numpy()

    def train_losses(self, rows: list[int]) -> np.ndarray:
        device = self.training.device
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            return np.array([evaluate(self.training.problem)["train_loss"]])


def run(
    spec: RunSpec,
    should_stop: Callable[[], bool] | None = None,
    target_loss: float | None = None,
) -> Trajectory:
    """Train one run on the eager engine. Never raises for a problem of the run itself: an
    exception becomes status ``failed`` with its message and traceback. ``target_loss``: the
    loss whose exact step the trajectory reports (default: the spec's); it never changes the
    training itself."""

    def train(device: torch.device, trajs: list[Trajectory]) -> None:
        target = spec.target_loss if target_loss is None else target_loss
        _train(spec, device, trajs[0], should_stop, target)

    return train_unit([spec], train, "batch_size")[0]


def _train(
    spec: RunSpec,
    device: torch.device,
    traj: Trajectory,
    should_stop: Callable[[], bool] | None,
    target: float | None,
) -> None:
    problem = build_for_run(spec)
    problem.to(device)
    params = problem.trainable_parameters()
    if not params:
        traj.status = "stalled"
        traj.message = (
            "stalled: no trainable parameters (every parameter has "
            "requires_grad=False: frozen weights)"
        )
        return
    optimizer, impl = optimizers.build_optimizer(
        spec.optimizer_class, params, spec.lr, spec.optimizer_kwargs, spec.optimizer_impl, device
    )
    # The lr of every step, as recorded in the steps table; None for a constant lr.
    lr_at: list[float] | None = None
    if spec.schedule["name"] != "constant":
        lr_at = schedules.lr_per_step(spec.schedule, spec.lr, spec.steps, spec.steps).tolist()
    traj.info.update(optimizer_impl=impl, **run_info(spec, device))
    traj.info["n_parameters"] = sum(p.numel() for p in params)

    training = EagerTraining(problem, optimizer, device)
    state = RunState(spec, traj.evals)
    batch = Batches(problem, spec, device)
    update = make_update(problem, optimizer, optimizers.needs_closure(spec.optimizer_class))
    search = TargetSearch(EagerReplay(training, update, batch, lr_at), target)
    every = spec.checkpoint_every if checkpoint.path_for(spec) else 0
    resumed = checkpoint.load(spec) if every else None
    if resumed is not None:
        training.load_state_dict(resumed)
        state.load_state_dict(resumed)
        traj.info["resumed_from_step"] = state.step
        if "target_search" in resumed:
            search.load_state_dict(resumed["target_search"])
        else:  # a checkpoint from before exact targets: search from here on
            search.mark([state])
    else:
        _record_eval(state, problem, search)
    before = [p.detach().clone() for p in params] if state.step == 0 else []

    problem.model.train()
    clock = WindowClock(device, guard_syncs=True)
    # Checks and decisions happen only at these ends; the extra checkpoint ends are save points,
    # so checkpointing cannot change where a run stops (nor its losses, nor its run_id).
    decision_ends = set(window_ends(spec, state.warmup))
    for end in window_ends(spec, state.warmup, every):
        if end <= state.step:
            continue
        # ---- hot loop: nothing here reads a value back from the device -----------------------
        pending: list[Tensor] = []
        with clock:
            for i in range(state.step, end):
                if lr_at is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = lr_at[i]
                xb, yb = batch(i)
                loss = update(xb, yb)
                pending.append(loss.detach())
        # ---- bookkeeping, clock stopped --------------------------------------------------------
        losses = torch.stack(pending).float().cpu().numpy()
        state.record_window(losses, clock.elapsed, clock.cpu_elapsed)
        if before:
            stalled = checks.stall_message(problem, params, before)
            state.verdict = Verdict("stalled", stalled) if stalled else None
            before = []
        if state.wants_parameters():
            state.record_parameters(training.flat_parameters())
        if state.step in decision_ends:
            state.verdict = _decide(state, problem, search)
            if state.verdict is not None:
                break
        stop = should_stop is not None and should_stop() and state.step < spec.steps
        if every and (state.step % every == 0 or stop) and state.step < spec.steps:
            saved = {**state.state_dict(), **training.state_dict()}
            checkpoint.save(spec, {**saved, "target_search": search.state_dict()})
        if stop:  # a run that has done all its steps is finished, Ctrl-C or not
            raise StopRequested
    if not state.evaluated_now():
        _record_eval(state, problem, search)
    state.finish(traj)
    if spec.save_model:
        traj.model_state = {k: v.detach().cpu() for k, v in problem.model.state_dict().items()}


def _decide(state: RunState, problem: Problem, search: TargetSearch) -> Verdict | None:
    """The checks at a decision window end, in order: stalled (already known), diverged,
    evaluation (early stopping, target), out of time."""
    verdict = state.verdict or state.check_losses()
    if verdict is None and is_eval_step(state.spec, state.step):
        verdict = state.check_evaluation(_record_eval(state, problem, search))
    return verdict or state.check_clock()


def _record_eval(state: RunState, problem: Problem, search: TargetSearch) -> dict[str, float]:
    """Evaluate on the full data, record it, and locate the exact step if the target was
    reached since the last evaluation (a replay, off the clock)."""
    result = state.record_eval(evaluate(problem))
    search.after_evaluation([state], [result["train_loss"]])
    search.mark([state])
    return result


__all__: list[Any] = [
    "CHUNK_STEPS",
    "SYNC_DEBUG_ENV",
    "WARMUP_STEPS",
    "Batches",
    "StopRequested",
    "evaluate",
    "make_update",
    "resolve_device",
    "run",
    "window_ends",
]
