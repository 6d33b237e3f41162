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
"""

from __future__ import annotations

import datetime as dt
import math
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sgdbench import schedules, stacked_optim
from sgdbench.engine.eager import (
    LAST_UPDATES,
    WARMUP_STEPS,
    StopRequested,
    _device_name,
    _divergence,
    _run_context,
    resolve_device,
    update_cosine,
    window_ends,
)
from sgdbench.engine.stacking import StackedBatches, StackedModel
from sgdbench.engine.trajectory import EVAL_COLUMNS, Trajectory
from sgdbench.errors import describe
from sgdbench.halving import Pruner
from sgdbench.problems.factory import build_for_run
from sgdbench.spec import RunSpec

STALL_MESSAGE = (
    "stalled: no parameter changed in the first update (a zero gradient, e.g. a stationary "
    'start such as init = "zeros" at a minimum, or lr 0 in effect)'
)


def run_group(
    specs: list[RunSpec], should_stop: Callable[[], bool] | None = None
) -> list[Trajectory]:
    """Train ``specs`` (one group: equal ``group_id``) as one stacked model; one trajectory per
    spec, in order. Never raises for a problem of the runs themselves: an exception makes every
    member ``failed`` with its message and traceback."""
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    wall_start = time.perf_counter()
    trajs = [
        Trajectory(spec_json=s.to_json(), run_id=s.run_id, status="ok", started_at=started_at)
        for s in specs
    ]
    if len({s.group_id for s in specs}) != 1:
        raise ValueError("run_group: the specs are not one group (their group_id differ)")
    device, why = resolve_device(specs[0].device)
    if device is None:
        for t in trajs:
            t.status, t.message = "skipped", why
        return trajs
    try:
        with _run_context(specs[0], device):
            _train_group(specs, device, trajs, should_stop)
    except StopRequested:
        raise
    except Exception as e:  # isolate the failure to this group
        message = describe(e)
        if isinstance(e, torch.OutOfMemoryError):
            message += " (out of memory: try a smaller group or batch_size)"
        for t in trajs:
            t.status, t.message, t.traceback = "failed", message, traceback.format_exc()
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    wall = time.perf_counter() - wall_start
    for t in trajs:
        t.wall_time_s = wall / len(trajs)
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


def _train_group(
    specs: list[RunSpec],
    device: torch.device,
    trajs: list[Trajectory],
    should_stop: Callable[[], bool] | None,
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
    pruner = Pruner.for_specs(specs)  # successive halving: None for a plain group
    info = {
        "optimizer_impl": "stacked",
        "device_name": _device_name(device),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "deterministic": spec0.deterministic,
        "n_parameters": model.flat.shape[1],
        "group_id": spec0.group_id,
        "group_size": len(specs),
        "stacked_forward": model.kind,
    }
    for t in trajs:
        t.info.update(info)

    batches = StackedBatches(problem, specs, device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda *a: None)

    n_members, n_steps = len(specs), spec0.steps
    warmup = min(WARMUP_STEPS, n_steps)
    losses = np.empty((n_steps, n_members), dtype=np.float32)
    clock = 0.0  # every member still in the stack has the same clock: the sum of its shares
    group_clock = 0.0
    active = list(range(n_members))  # spec index of each row of the stack
    first_loss = np.full(n_members, math.nan)
    window_times: list[tuple[int, int, float, float]] = []  # (start, end, clock before, share)
    tail: dict[int, list[Tensor]] = {}  # member -> its parameters at the ends of the last steps
    step = 0

    def record_eval(rows: list[int], at: int) -> dict[str, np.ndarray]:
        """Evaluate the stack; record it for the members at stack positions ``rows``."""
        result = model.evaluate()
        for r in rows:
            ev = trajs[active[r]].evals
            ev["step"].append(at)
            ev["time_s"].append(clock)
            for col in EVAL_COLUMNS[2:]:
                ev[col].append(float(result[col][r]) if col in result else math.nan)
        return result

    def finish(m: int, status: str, message: str, at: int) -> None:
        t = trajs[m]
        t.status, t.message = status, message
        t.losses = losses[:at, m].copy()
        t.time_s = _member_times(window_times, at)
        t.train_time_s = clock
        t.info["update_cosine"] = update_cosine(tail.get(m, []))
        if at >= warmup:
            t.warmup_steps, t.warmup_s = warmup, _member_times(window_times, warmup)[-1]
        if pruner is not None:
            reached = [i for i, b in enumerate([*pruner.rungs, n_steps]) if b <= at]
            t.info["rung"] = reached[-1] if reached else None
            if status not in ("ok", "pruned"):  # failed its configuration: +inf from now on
                pruner.retire(m)

    record_eval(list(range(n_members)), 0)
    before = model.flat.clone()
    ends = window_ends(spec0, warmup)
    if pruner is not None:
        ends = sorted({*ends, *pruner.rungs})  # a rung is a window end, with an evaluation
    for end in ends:
        # ---- hot loop: nothing here reads a value back from the device -----------------------
        pending: list[Tensor] = []
        sync(device)
        t0 = time.perf_counter()
        scalars = optimizer.window_scalars(
            end - step, None if factor is None else factor(np.arange(step, end))
        )
        for i, scalars_i in enumerate(scalars, start=step):
            xb, yb, shared = batches(i)
            loss, grad = model.loss_and_gradient(xb, yb, shared)
            optimizer.step(grad, scalars_i)
            pending.append(loss)
        sync(device)
        elapsed = time.perf_counter() - t0
        # ---- bookkeeping, clock stopped --------------------------------------------------------
        chunk = torch.stack(pending).float().cpu().numpy()  # [steps, members in the stack]
        losses[step:end, active] = chunk
        share = elapsed / len(active)
        window_times.append((step, end, clock, share))
        clock += share
        group_clock += elapsed
        done: dict[int, tuple[str, str]] = {}  # row -> (status, message)
        if step == 0:
            first_loss[active] = chunk[0]
            changed = (model.flat != before).any(dim=1).cpu().numpy()
            del before
            for r in np.flatnonzero(~changed):
                done[int(r)] = ("stalled", STALL_MESSAGE)
        step = end
        if step >= n_steps - LAST_UPDATES:
            flat = model.flat.detach().double().cpu()
            for r, m in enumerate(active):
                tail.setdefault(m, []).append(flat[r])
        for r, m in enumerate(active):
            if r not in done:
                status, message = _divergence(
                    chunk[:, r], step - len(chunk), float(first_loss[m]), spec0.divergence_factor
                )
                if status != "ok":
                    done[r] = (status, message)
        rung = None if pruner is None else pruner.rung_of(step)
        eval_step = (spec0.eval_every > 0 and step % spec0.eval_every == 0) or rung is not None
        finished = step == n_steps
        timeout = spec0.max_seconds is not None and clock >= spec0.max_seconds and step < n_steps
        ok_rows = [r for r in range(len(active)) if r not in done]
        if eval_step or finished or timeout or done:
            everyone = eval_step or finished or timeout
            result = record_eval(list(range(len(active))) if everyone else sorted(done), step)
            if eval_step and spec0.stop_at_target and spec0.target_loss is not None:
                for r in ok_rows:
                    if result["train_loss"][r] <= spec0.target_loss:
                        done[r] = (
                            "ok",
                            f"reached target_loss {spec0.target_loss:g} at step {step}",
                        )
        if pruner is not None and rung is not None and not timeout:
            for r, (status, _) in done.items():  # diverged in this very window: +inf already
                if status != "ok":
                    pruner.retire(active[r])
            alive = [r for r in range(len(active)) if r not in done]
            pruned = set(
                pruner.decide([active[r] for r in alive], [result["train_loss"][r] for r in alive])
            )
            for r in alive:
                if active[r] in pruned:
                    done[r] = (
                        "pruned",
                        f"pruned at rung {rung} (step {step}): the median full-data loss over "
                        f"its seeds was not among the best 1/{pruner.eta}",
                    )
        if finished or timeout:
            message = (
                f"max_seconds {spec0.max_seconds:g} reached after {step} of {n_steps} steps"
                if timeout
                else ""
            )
            for r in range(len(active)):
                done.setdefault(r, ("timeout" if timeout else "ok", message))
        for r, (status, message) in done.items():
            finish(active[r], status, message, step)
        if len(done) == len(active):
            break
        if done:
            keep = [r for r in range(len(active)) if r not in done]
            keep_idx = torch.tensor(keep, device=device)
            model.select(keep_idx)
            optimizer.select(keep_idx, model.flat)
            batches.select(keep)
            active = [active[r] for r in keep]
        if should_stop is not None and should_stop():
            raise StopRequested
    for t in trajs:
        t.info["group_train_time_s"] = group_clock


def _member_times(windows: list[tuple[int, int, float, float]], at: int) -> np.ndarray:
    """A member's training clock at the end of each of its first ``at`` steps: within a window,
    its share of the window's time spread evenly over the window's steps."""
    out = np.empty(at, dtype=np.float64)
    for start, end, before, share in windows:
        if start >= at:
            break
        n = end - start
        out[start:end] = before + share * np.arange(1, n + 1) / n
    return out
