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

        return step(closure)  # LBFGS: the first loss

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


FROM_CHECKPOINT: dict[str, Any] = {}  # ``resumed``'s default: the spec's checkpoint, if any


def _train(
    spec: RunSpec,
    device: torch.device,
    traj: Trajectory,
    should_stop: Callable[[], bool] | None,
    target: float | None,
    resumed: dict[str, Any] | None = FROM_CHECKPOINT,
    pause_at: int | None = None,
) -> dict[str, Any] | None:
    """Train ``spec`` into ``traj`` from ``resumed`` (a saved state; by default the spec's own
    checkpoint, if it has one) to its end, or until ``pause_at`` steps (a halving rung): then
    the run is not finished and its saved state is returned (``EagerRun.saved``)."""
    live = EagerRun.build(spec, device, traj, target)
    if live is None:
        return None
    if resumed is FROM_CHECKPOINT:
        resumed = checkpoint.load(spec) if live.every else None
        if resumed is not None:
            traj.info["resumed_from_step"] = resumed["step"]
    live.start(resumed)
    state, batch, update, lr_at = live.state, live.batch, live.update, live.lr_at
    optimizer = live.training.optimizer
    live.problem.model.train()
    clock = WindowClock(device, guard_syncs=True)
    for end in live.ends:
        if end <= state.step:
            continue
        # ---- hot loop: nothing here reads a value back from the device -----------------------
        pending: list[Tensor] = []
        clock.timed = state.step >= state.warmup  # the steady state: probe beside it
        with clock:
            for i in range(state.step, end):
                if lr_at is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = lr_at[i]
                xb, yb = batch(i)
                loss = update(xb, yb)
                pending.append(loss.detach())
        # ---- bookkeeping, clock stopped --------------------------------------------------------
        if live.after_window(torch.stack(pending), clock):
            break  # a verdict: the run ends here
        if state.step == pause_at:
            return live.saved()
        stop = should_stop is not None and should_stop() and state.step < spec.steps
        live.checkpoint(stop)
        if stop:  # a run that has done all its steps is finished, Ctrl-C or not
            raise StopRequested
    live.finish()
    return None


class EagerRun:
    """One eager run's live objects and bookkeeping around the hot loop in ``_train``: the
    start (fresh or from a saved state), the checks at each window end, checkpoints, the end."""

    def __init__(
        self, spec: RunSpec, traj: Trajectory, training: EagerTraining, target: float | None
    ) -> None:
        problem, optimizer = training.problem, training.optimizer
        self.spec, self.traj, self.training, self.problem = spec, traj, training, problem
        self.params = training.params
        # The lr of every step, as recorded in the steps table; None for a constant lr.
        self.lr_at: list[float] | None = None
        if spec.schedule["name"] != "constant":
            lrs = schedules.lr_per_step(spec.schedule, spec.lr, spec.steps, spec.steps)
            self.lr_at = lrs.tolist()
        self.state = RunState(spec, traj.evals)
        self.batch = Batches(problem, spec, training.device)
        closure = optimizers.needs_closure(spec.optimizer_class)
        self.update = make_update(problem, optimizer, closure)
        replay = EagerReplay(training, self.update, self.batch, self.lr_at)
        self.search = TargetSearch(replay, target)
        self.every = spec.checkpoint_every if checkpoint.path_for(spec) else 0
        # Halving rungs are decision ends with an evaluation, as on the stacked engine (also
        # when the run trains alone, so that it trains exactly as in its halving group).
        self.rungs = set(spec.halving["rungs"]) if spec.halving else set()
        # Checks and decisions happen only at these ends; the extra checkpoint ends are save
        # points, so checkpointing cannot change where a run stops (nor its losses, nor its id).
        self.decision_ends = {*window_ends(spec, self.state.warmup), *self.rungs}
        self.ends = sorted({*window_ends(spec, self.state.warmup, self.every), *self.rungs})
        self.before: list[Tensor] = []

    @classmethod
    def build(
        cls, spec: RunSpec, device: torch.device, traj: Trajectory, target: float | None
    ) -> EagerRun | None:
        """Build the problem and optimizer on ``device``; None (and ``traj`` stalled) when the
        problem has no trainable parameter."""
        problem = build_for_run(spec)
        problem.to(device)
        params = problem.trainable_parameters()
        if not params:
            traj.status = "stalled"
            traj.message = (
                "stalled: no trainable parameters (every parameter has "
                "requires_grad=False: frozen weights)"
            )
            return None
        optimizer, impl = optimizers.build_optimizer(
            spec.optimizer_class,
            params,
            spec.lr,
            spec.optimizer_kwargs,
            spec.optimizer_impl,
            device,
        )
        traj.info.update(optimizer_impl=impl, **run_info(spec, device))
        traj.info["n_parameters"] = sum(p.numel() for p in params)
        return cls(spec, traj, EagerTraining(problem, optimizer, device), target)

    def start(self, resumed: dict[str, Any] | None) -> None:
        """From ``resumed`` (a saved state), or from step 0 with the initial evaluation."""
        if resumed is not None:
            self.training.load_state_dict(resumed)
            self.state.load_state_dict(resumed)
            if "target_search" in resumed:
                self.search.load_state_dict(resumed["target_search"])
            else:  # a checkpoint from before exact targets: search from here on
                self.search.mark([self.state])
        else:
            _record_eval(self.state, self.problem, self.search)
        if self.state.step == 0:
            self.before = [p.detach().clone() for p in self.params]

    def after_window(self, losses: Tensor, clock: WindowClock) -> bool:
        """Record the window just trained and run the checks; True when the run ends here."""
        state = self.state
        state.record_window(
            losses.float().cpu().numpy(), clock.elapsed, clock.cpu_elapsed, clock.probe_s
        )
        if self.before:
            stalled = checks.stall_message(self.problem, self.params, self.before)
            state.verdict = Verdict("stalled", stalled) if stalled else None
            self.before = []
        if state.wants_parameters():
            state.record_parameters(self.training.flat_parameters())
        if state.step in self.decision_ends:
            state.verdict = _decide(state, self.problem, self.search)
            if state.verdict is None and state.step in self.rungs and not state.evaluated_now():
                _record_eval(state, self.problem, self.search)  # the rung's ranking loss
        return state.verdict is not None

    def saved(self) -> dict[str, Any]:
        """Everything a later start needs to continue bit for bit (a checkpoint's content)."""
        saved = {**self.state.state_dict(), **self.training.state_dict()}
        return {**saved, "target_search": self.search.state_dict()}

    def checkpoint(self, stop: bool) -> None:
        """Save a checkpoint at its period, or now when stopping, unless the run is done."""
        step = self.state.step
        if self.every and (step % self.every == 0 or stop) and step < self.spec.steps:
            checkpoint.save(self.spec, self.saved())

    def finish(self) -> None:
        """The run ended (its steps done, or a verdict): write its result into ``traj``."""
        if not self.state.evaluated_now():
            _record_eval(self.state, self.problem, self.search)
        self.state.finish(self.traj)
        if self.spec.save_model:
            model = self.problem.model
            self.traj.model_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}


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
