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
stalled, out of time) counts as +inf for its configuration from then on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sgdbench import schedules, stacked_optim
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

    def train(device: torch.device, trajs: list[Trajectory]) -> None:
        target = specs[0].target_loss if target_loss is None else target_loss
        _train_group(specs, device, trajs, should_stop, target)

    return train_unit(specs, train, "group or batch_size")


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
) -> None:
    spec0 = specs[0]
    problem, model = _build(specs, device)
    optimizer = stacked_optim.StackedOptimizer.create(
        spec0.optimizer_class,
        model.flat,
        [s.lr for s in specs],
        [s.optimizer_kwargs for s in specs],
    )
    factor = (
        None
        if spec0.schedule["name"] == "constant"
        else schedules.factor_fn(spec0.schedule, spec0.steps)
    )
    info = {
        "optimizer_impl": "stacked",
        **run_info(spec0, device),
        "n_parameters": model.flat.shape[1],
        "group_id": spec0.group_id,
        "group_size": len(specs),
        "stacked_forward": model.kind,
    }
    for t in trajs:
        t.info.update(info)
    pruner = Pruner.for_specs(specs)  # successive halving: None for a plain group

    batches = StackedBatches(problem, specs, device)
    stack = [RunState(s, t.evals) for s, t in zip(specs, trajs, strict=True)]  # row -> member
    members = list(range(len(specs)))  # row -> spec index
    search = TargetSearch(StackedReplay(model, optimizer, batches, factor), target)
    initial = model.evaluate()
    _record_evals(stack, initial, range(len(stack)))
    search.after_evaluation(stack, initial["train_loss"])
    search.mark(stack)
    before = model.flat.clone()
    clock = WindowClock(device)
    group_clock = 0.0
    step = 0
    ends = window_ends(spec0, warmup_steps(spec0))
    if pruner is not None:
        ends = sorted({*ends, *pruner.rungs})  # a rung is a window end, with an evaluation
    for end in ends:
        # ---- hot loop: nothing here reads a value back from the device -----------------------
        pending: list[Tensor] = []
        with clock:
            lr_factors = None if factor is None else factor(np.arange(step, end))
            for i, scalars in enumerate(optimizer.window_scalars(end - step, lr_factors), step):
                xb, yb, shared = batches(i)
                loss, grad = model.loss_and_gradient(xb, yb, shared)
                optimizer.step(grad, scalars)
                pending.append(loss)
        # ---- bookkeeping, clock stopped --------------------------------------------------------
        chunk = torch.stack(pending).float().cpu().numpy()  # [steps, members in the stack]
        group_clock += clock.elapsed
        for r, state in enumerate(stack):
            share = len(stack)
            state.record_window(chunk[:, r], clock.elapsed / share, clock.cpu_elapsed / share)
        if step == 0:
            changed = (model.flat != before).any(dim=1).cpu().numpy()
            for r in np.flatnonzero(~changed):
                stack[r].verdict = Verdict("stalled", STALL_MESSAGE)
            before = model.flat[:0]  # no longer needed: free it
        step = end
        if stack[0].wants_parameters():
            flat = model.flat.detach().double().cpu()
            for r, state in enumerate(stack):
                state.record_parameters(flat[r])
        evaluated = _decide(stack, model, rung=pruner is not None and step in pruner.rungs)
        if evaluated is not None:  # every row's loss is known here: the exact step, if crossed
            search.after_evaluation(stack, evaluated["train_loss"])
        if pruner is not None:
            _halve(pruner, stack, members)
        for state, m in zip(stack, members, strict=True):
            if state.verdict is not None:
                state.finish(trajs[m])
                if pruner is not None:
                    trajs[m].info["rung"] = pruner.reached(state.step, state.spec.steps)
        keep = [r for r, state in enumerate(stack) if state.verdict is None]
        if not keep:
            break
        if len(keep) < len(stack):  # the finished members leave the stack
            keep_idx = torch.tensor(keep, device=device)
            model.select(keep_idx)
            optimizer.select(keep_idx, model.flat)
            batches.select(keep)
            stack, members = [stack[r] for r in keep], [members[r] for r in keep]
        if evaluated is not None:
            search.mark(stack)
        if should_stop is not None and should_stop():
            raise StopRequested
    for t in trajs:
        t.info["group_train_time_s"] = group_clock


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
