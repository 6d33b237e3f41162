"""The stacked engine: a group of runs that differ only in learning rate, seed and elementwise
optimizer hyperparameters, trained as one stacked model.

Each member keeps its own initialisation (built exactly as the eager engine builds it for its
seed) and its own data order (the eager engine's order for its seed), so a member's trajectory
matches the same run on the eager engine to float32 rounding. The loop has the eager engine's
shape: windows of steps with nothing read back from the device, then bookkeeping with the clock
stopped. Members that diverge, stall or reach their target leave the stack at the window end
where it is seen (the remaining members are compacted), without disturbing the others.

Time is shared equally: in each window every member still in the stack is charged
``window time / members in the stack``. A member's ``train_time_s`` is the sum of its shares, so
its ``steps_per_s`` is the group's config-steps per second while it trained, directly comparable
with an eager run's, and the members' ``train_time_s`` add up to the group's training time.
The group's own figures go in ``Trajectory.info`` (``group_train_time_s``, ``group_size``).

Each member has its own ``RunState`` and is judged by the same checks, in the same order, as an
eager run; only the evaluation is batched (one pass over the data for the whole stack).

Successive halving (``[search] method = "halving"``): each rung is a window end with an
evaluation for everyone; a ``Pruner`` ranks the configurations still training by that
evaluation and the pruned members leave the stack like any finished member (status ``pruned``),
while the survivors go on, never restarted. A member that ended otherwise than ``ok`` (diverged,
stalled, out of time) counts as +inf for its configuration from then on. In a results folder
the group's state after each rung's decision is checkpointed, and a rerun of a killed sweep
continues from the last rung (``stacked_checkpoint``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sgdbench import schedules, stacked_optim
from sgdbench.engine import stacked_checkpoint
from sgdbench.engine.checks import STALL_MESSAGE, Verdict
from sgdbench.engine.context import StopRequested, WindowClock, run_info, train_unit
from sgdbench.engine.crossing import TargetSearch
from sgdbench.engine.stacking import StackedBatches, StackedModel
from sgdbench.engine.state import RunState
from sgdbench.engine.trajectory import Trajectory
from sgdbench.engine.windows import is_eval_step, warmup_steps, window_ends
from sgdbench.halving import Pruner
from sgdbench.problems.factory import build_for_run
from sgdbench.spec import RunSpec


def run_group(
    specs: list[RunSpec],
    should_stop: Callable[[], bool] | None = None,
    target_loss: float | None = None,
) -> list[Trajectory]:
    """Train ``specs`` (one group: equal ``group_id``) as one stacked model; one trajectory per
    spec, in order. Never raises for a problem of the runs themselves: an exception makes every
    member ``failed`` with its message and traceback. ``target_loss``: the loss whose exact
    step the trajectories report (default: the specs'); it never changes the training."""
    if len({s.group_id for s in specs}) != 1:
        raise ValueError("run_group: the specs are not one group (their group_id differ)")

    earlier_wall_s: list[float] = []  # before a killed sweep's checkpoint, when resumed

    def train(device: torch.device, trajs: list[Trajectory]) -> None:
        target = specs[0].target_loss if target_loss is None else target_loss
        earlier_wall_s.append(_train_group(specs, device, trajs, should_stop, target))

    trajs = train_unit(specs, train, "group or batch_size")
    for t in trajs:
        t.wall_time_s += sum(earlier_wall_s) / len(trajs)
    return trajs


def _build(specs: list[RunSpec], device: torch.device) -> tuple[Any, StackedModel]:
    """Each member's initial parameters exactly as the eager engine builds them for its seed
    (one build per distinct seed); the first build provides the structure and the data."""
    built: dict[int, list[Tensor]] = {}
    template = None
    for spec in specs:
        if spec.seed in built:
            continue
        problem = build_for_run(spec)
        built[spec.seed] = [p.detach().clone() for p in problem.trainable_parameters()]
        template = template or problem
    assert template is not None
    template.to(device)
    return template, StackedModel(template, [built[s.seed] for s in specs], device)


class StackedReplay:
    """``crossing.Replayable`` for a stack: a step exactly as the window loop takes it. The
    rows do not change between a snapshot and its replay (a change of rows comes with an
    evaluation of every row, after which the search takes a new snapshot)."""

    def __init__(
        self,
        model: StackedModel,
        optimizer: stacked_optim.StackedOptimizer,
        batches: StackedBatches,
        factor: Callable[[np.ndarray], np.ndarray] | None,
    ) -> None:
        self.model, self.optimizer, self.batches, self.factor = model, optimizer, batches, factor

    def snapshot(self) -> tuple[Tensor, Any, int]:
        state = self.optimizer.state
        copies = {
            f.name: v.clone()
            for f in dataclasses.fields(state)
            if (v := getattr(state, f.name)) is not None
        }
        return self.model.flat.clone(), copies, self.optimizer.steps_done

    def restore(self, snapshot: tuple[Tensor, Any, int]) -> None:
        flat, state, steps_done = snapshot
        self.model.flat.copy_(flat)  # in place: the leaves and the optimizer view this tensor
        self.optimizer.state = dataclasses.replace(self.optimizer.state, **state)
        self.optimizer.steps_done = steps_done

    def replay_step(self, step: int) -> np.ndarray:
        lr_factors = None if self.factor is None else self.factor(np.arange(step, step + 1))
        (scalars,) = self.optimizer.window_scalars(1, lr_factors)
        loss, grad = self.model.loss_and_gradient(*self.batches(step))
        self.optimizer.step(grad, scalars)
        return loss.float().cpu().numpy()

    def train_losses(self, rows: list[int]) -> np.ndarray:
        if len(rows) == self.model.members:
            return self.model.evaluate()["train_loss"]
        index = torch.tensor(rows, device=self.model.flat.device)
        return self.model.members_at(index).evaluate()["train_loss"]


def _train_group(
    specs: list[RunSpec],
    device: torch.device,
    trajs: list[Trajectory],
    should_stop: Callable[[], bool] | None,
    target: float | None,
) -> float:
    """Train the group; the wall time its members spent before the checkpoint it resumed."""
    group = _Group(specs, device, trajs, target)
    # Selecting the rows that stay changes these objects in place: bound once.
    model, optimizer, batches, factor = group.model, group.optimizer, group.batches, group.factor
    for end in group.ends:
        # ---- hot loop: nothing here reads a value back from the device -----------------------
        step, pending = group.step, list[Tensor]()
        group.clock.timed = step >= group.stack[0].warmup  # the steady state: probe beside it
        with group.clock:
            lr_factors = None if factor is None else factor(np.arange(step, end))
            for i, scalars in enumerate(optimizer.window_scalars(end - step, lr_factors), step):
                xb, yb, shared = batches(i)
                loss, grad = model.loss_and_gradient(xb, yb, shared)
                optimizer.step(grad, scalars)
                pending.append(loss)
        # ---- bookkeeping, clock stopped --------------------------------------------------------
        if not group.window_end(end, pending):
            break
        if should_stop is not None and should_stop():
            raise StopRequested
    for t in trajs:
        t.info["group_train_time_s"] = group.train_time_s
    return group.earlier_wall_s


class _Group:
    """A stack in training: its model, optimizer, data, one ``RunState`` per row, and what
    happens at a window end (``window_end``); the window's steps are ``_train_group``'s."""

    def __init__(
        self,
        specs: list[RunSpec],
        device: torch.device,
        trajs: list[Trajectory],
        target: float | None,
    ) -> None:
        spec0 = specs[0]
        self.specs, self.device, self.trajs = specs, device, trajs
        self.wall_start, self.earlier_wall_s = time.perf_counter(), 0.0
        self.problem, self.model = _build(specs, device)
        self.optimizer = stacked_optim.StackedOptimizer.create(
            spec0.optimizer_class,
            self.model.flat,
            [s.lr for s in specs],
            [s.optimizer_kwargs for s in specs],
        )
        self.factor = (
            None
            if spec0.schedule["name"] == "constant"
            else schedules.factor_fn(spec0.schedule, spec0.steps)
        )
        info = {
            "optimizer_impl": "stacked",
            **run_info(spec0, device),
            "n_parameters": self.model.flat.shape[1],
            "group_id": spec0.group_id,
            "group_size": len(specs),
            "stacked_forward": self.model.kind,
        }
        for t in trajs:
            t.info.update(info)
        self.pruner = Pruner.for_specs(specs)  # successive halving: None for a plain group
        self.batches = StackedBatches(self.problem, specs, device)
        self.stack = [RunState(s, t.evals) for s, t in zip(specs, trajs, strict=True)]  # by row
        self.members = list(range(len(specs)))  # row -> spec index
        self.ended: dict[int, RunState] = {}  # spec index -> state, once it left the stack
        replay = StackedReplay(self.model, self.optimizer, self.batches, self.factor)
        self.search = TargetSearch(replay, target)
        initial = self.model.evaluate()
        _record_evals(self.stack, initial, range(len(self.stack)))
        self.search.after_evaluation(self.stack, initial["train_loss"])
        self.search.mark(self.stack)
        self.before = self.model.flat.clone()
        self.clock = WindowClock(device)
        self.train_time_s = 0.0
        self.step = 0
        self.ends = window_ends(spec0, warmup_steps(spec0))
        if self.pruner is not None:
            self.ends = sorted({*self.ends, *self.pruner.rungs})  # a rung is a window end
            saved = stacked_checkpoint.load(self)  # a killed sweep's last rung
            if saved is not None:
                stacked_checkpoint.restore(self, saved)

    def window_end(self, end: int, pending: list[Tensor]) -> bool:
        """Bookkeeping after the window that ended at step ``end``: record its losses and
        shares of time, run the checks, let finished members leave. False: none is left."""
        stack, clock = self.stack, self.clock
        chunk = torch.stack(pending).float().cpu().numpy()  # [steps, members in the stack]
        self.train_time_s += clock.elapsed
        for r, state in enumerate(stack):
            share = len(stack)
            state.record_window(
                chunk[:, r], clock.elapsed / share, clock.cpu_elapsed / share, clock.probe_s
            )
        if self.step == 0:
            changed = (self.model.flat != self.before).any(dim=1).cpu().numpy()
            for row in np.flatnonzero(~changed):
                stack[row].verdict = Verdict("stalled", STALL_MESSAGE)
            self.before = self.model.flat[:0]  # no longer needed: free it
        self.step = end
        if stack[0].wants_parameters():
            flat = self.model.flat.detach().double().cpu()
            for r, state in enumerate(stack):
                state.record_parameters(flat[r])
        pruner = self.pruner
        evaluated = _decide(stack, self.model, rung=pruner is not None and end in pruner.rungs)
        if evaluated is not None:  # every row's loss is known here: the exact step, if crossed
            self.search.after_evaluation(stack, evaluated["train_loss"])
        if pruner is not None:
            _halve(pruner, stack, self.members)
        self._finish()
        if not self.stack:
            return False
        if evaluated is not None:
            self.search.mark(self.stack)
        if pruner is not None and end in pruner.rungs:
            stacked_checkpoint.save(self)  # the rung reached, for a killed sweep's rerun
        return True

    def _finish(self) -> None:
        """Members with a verdict get their trajectory and leave the stack (compacted)."""
        for state, m in zip(self.stack, self.members, strict=True):
            if state.verdict is not None:
                state.finish(self.trajs[m])
                self.ended[m] = state
                if self.pruner is not None:
                    self.trajs[m].info["rung"] = self.pruner.reached(state.step, state.spec.steps)
        keep = [r for r, state in enumerate(self.stack) if state.verdict is None]
        if len(keep) < len(self.stack):
            if keep:
                keep_idx = torch.tensor(keep, device=self.device)
                self.model.select(keep_idx)
                self.optimizer.select(keep_idx, self.model.flat)
                self.batches.select(keep)
            self.stack = [self.stack[r] for r in keep]
            self.members = [self.members[r] for r in keep]


def _decide(
    stack: list[RunState], model: StackedModel, rung: bool = False
) -> dict[str, np.ndarray] | None:
    """The eager engine's checks, member by member and in its order, at a window end: stalled
    (already known), diverged, evaluation (early stopping, target), out of time; a member that
    ends here is evaluated here, and everyone is at an evaluation step, a halving ``rung`` or
    the run's end. A rung's evaluation only feeds the pruning: the checks that would stop the
    same run on its own look at its evaluation steps alone. Returns the evaluation of every row
    when there was one (always when a row ends here)."""
    for state in stack:
        state.verdict = state.verdict or state.check_losses()
    first = stack[0]  # the members share the step and the clock
    eval_step = is_eval_step(first.spec, first.step)
    last = first.step == first.spec.steps or first.check_clock() is not None
    rows = [
        r for r, state in enumerate(stack) if eval_step or last or rung or state.verdict is not None
    ]
    if not rows:
        return None
    evaluated = model.evaluate()
    results = _record_evals(stack, evaluated, rows)
    for r, result in zip(rows, results, strict=True):
        state = stack[r]
        if state.verdict is None and eval_step:
            state.verdict = state.check_evaluation(result)
        if state.verdict is None and last:  # done all its steps, or out of time
            state.verdict = state.check_clock() or Verdict("ok")
    return evaluated


def _record_evals(
    stack: list[RunState], result: dict[str, np.ndarray], rows: Any
) -> list[dict[str, float]]:
    """Record the stack's evaluation for the members at ``rows``; their results, in order."""
    out = []
    for r in rows:
        member = {col: float(values[r]) for col, values in result.items()}
        out.append(stack[r].record_eval(member))
    return out


def _halve(pruner: Pruner, stack: list[RunState], members: list[int]) -> None:
    """Successive halving at a window end: members that just ended otherwise than ``ok`` count
    as +inf from now on; at a rung (not past ``max_seconds``), the configurations outside the
    best 1/eta by the rung's evaluation get the verdict ``pruned``."""
    for state, m in zip(stack, members, strict=True):
        if state.verdict is not None and state.verdict.status not in ("ok", "pruned"):
            pruner.retire(m)
    first = stack[0]  # the members share the step and the clock
    rung = pruner.rung_of(first.step)
    if rung is None or first.check_clock() is not None:
        return
    alive = [(state, m) for state, m in zip(stack, members, strict=True) if state.verdict is None]
    pruned = set(
        pruner.decide([m for _, m in alive], [state.evals["train_loss"][-1] for state, _ in alive])
    )
    for state, m in alive:
        if m in pruned:
            state.verdict = Verdict(
                "pruned",
                f"pruned at rung {rung} (step {state.step}): the median full-data loss over its "
                f"seeds was not among the best 1/{pruner.eta}",
            )
