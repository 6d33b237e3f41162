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

``SGDBENCH_SYNC_DEBUG=1`` runs the step loop of CUDA runs under
``torch.cuda.set_sync_debug_mode("error")``: any host synchronization in a step is an error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

# cuBLAS needs this before its first use for deterministic results (harmless on CPU).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import itertools

import torch
from torch import Tensor

from sgdbench import checkpoint, optimizers, schedules
from sgdbench.engine import seeding
from sgdbench.engine.trajectory import EVAL_COLUMNS, Trajectory
from sgdbench.errors import describe
from sgdbench.problems.base import Problem
from sgdbench.problems.factory import build_for_run
from sgdbench.spec import RunSpec

CHUNK_STEPS = 256  # steps between loss copies to the host and the divergence / time checks
LAST_UPDATES = 8  # the final steps whose successive update directions are compared (oscillation)
WARMUP_STEPS = 10  # first steps (allocator, kernel selection) timed apart as warmup_s
EVAL_BATCH = 8192  # rows per forward pass when evaluating on the full data
SYNC_DEBUG_ENV = "SGDBENCH_SYNC_DEBUG"  # "1": a host sync inside a CUDA step loop is an error


class StopRequested(Exception):
    """Raised by a ``should_stop`` callback's owner to end a run early (Ctrl-C)."""


def window_ends(spec: RunSpec, warmup_steps: int, extra_every: int = 0) -> list[int]:
    """Step counts after which the loop pauses for bookkeeping, sorted, ending at ``spec.steps``.

    Step 1 (the stall check), the warm-up end, every chunk, every evaluation, every
    ``extra_every`` steps (checkpoints), and each of the last ``LAST_UPDATES`` steps (where the
    parameters are snapshotted to measure whether updates bounce back and forth).
    """
    n = spec.steps
    ends = {1, warmup_steps, n, *range(n - LAST_UPDATES, n)}
    for every in (CHUNK_STEPS, spec.eval_every, extra_every):
        if every > 0:
            ends.update(range(every, n, every))
    return sorted(e for e in ends if 0 < e <= n)


class Batches:
    """Batches by step index. In-memory data sits on the device; a shuffled epoch's order is a
    ``randperm`` from a generator seeded by (run seed, epoch), so any step's batch can be
    recomputed without replaying earlier ones (which is what resuming needs).

    A shuffled epoch gathers the data into that order once (a second copy of the training data
    on the device) and its batches are slices of the copy: the same values as indexing with
    ``order[start:stop]`` every step, at the price of a view instead of a gather per step.
    """

    def __init__(self, problem: Problem, spec: RunSpec, device: torch.device) -> None:
        self.X, self.y = problem.X, problem.y
        self.n = problem.n_samples
        self.batch_size = spec.batch_size
        self.steps_per_epoch = spec.steps_per_epoch
        self.shuffle = spec.shuffle and not spec.full_batch and problem.X is not None
        self.seed = spec.seed
        self.device = device
        self._epoch = -1
        self._X_epoch, self._y_epoch = self.X, self.y

    def order(self, epoch: int) -> Tensor:
        """The sample order of shuffled epoch ``epoch``."""
        g = torch.Generator(device=self.device)
        g.manual_seed(seeding.derive_seed(self.seed, seeding.DATA_ORDER, epoch))
        return torch.randperm(self.n, generator=g, device=self.device)

    def _shuffle_to(self, epoch: int) -> None:
        assert self.X is not None
        order = self.order(epoch)
        self._X_epoch = self.X[order]
        self._y_epoch = None if self.y is None else self.y[order]
        self._epoch = epoch

    def __call__(self, step: int) -> tuple[Tensor | None, Tensor | None]:
        if self.X is None or self.batch_size >= self.n:
            return self.X, self.y
        epoch, i = divmod(step, self.steps_per_epoch)
        if self.shuffle and epoch != self._epoch:
            self._shuffle_to(epoch)
        start = i * self.batch_size
        stop = start + self.batch_size  # slicing clips the last, short batch of an epoch
        X, y = self._X_epoch, self._y_epoch
        return X[start:stop], None if y is None else y[start:stop]


def make_update(
    problem: Problem, optimizer: torch.optim.Optimizer, closure_style: bool
) -> Callable[[Tensor | None, Tensor | None], Tensor]:
    """One optimizer update on a batch; returns the batch loss computed before the update."""
    model, loss_fn = problem.model, problem.loss_fn
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def update(xb: Tensor | None, yb: Tensor | None) -> Tensor:
        loss = loss_fn(model(xb), yb)
        for p in params:  # optimizer.zero_grad(set_to_none=True) minus its wrappers' cost
            p.grad = None
        loss.backward()
        optimizer.step()
        return loss

    def update_with_closure(xb: Tensor | None, yb: Tensor | None) -> Tensor:
        def closure() -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            return loss

        return optimizer.step(closure)  # type: ignore[return-value]  # LBFGS: the first loss

    return update_with_closure if closure_style else update


@torch.no_grad()
def evaluate(problem: Problem) -> dict[str, float]:
    """Full-data training loss (and accuracy), and validation loss/accuracy where present."""
    model = problem.model
    was_training = model.training
    model.eval()
    try:
        out: dict[str, float] = {}
        if problem.X is None:
            out["train_loss"] = float(problem.loss_fn(model(None), None))
            return out
        out["train_loss"], acc = _loss_and_accuracy(problem, problem.X, problem.y)
        if acc is not None:
            out["train_accuracy"] = acc
        if problem.X_val is not None and len(problem.X_val):
            out["val_loss"], acc = _loss_and_accuracy(problem, problem.X_val, problem.y_val)
            if acc is not None:
                out["val_accuracy"] = acc
        return out
    finally:
        model.train(was_training)


def _loss_and_accuracy(problem: Problem, X: Tensor, y: Tensor | None) -> tuple[float, float | None]:
    total, correct, n = 0.0, 0, len(X)
    classify = problem.task == "classification" and y is not None
    for start in range(0, n, EVAL_BATCH):
        xb = X[start : start + EVAL_BATCH]
        yb = None if y is None else y[start : start + EVAL_BATCH]
        out = problem.model(xb)
        total += float(problem.loss_fn(out, yb)) * len(xb)
        if classify:
            assert yb is not None
            pred = (
                out.argmax(dim=1)
                if out.ndim == 2 and out.shape[1] > 1
                else (out.reshape(-1) > 0).to(yb.dtype)
            )
            correct += int((pred == yb).sum())
    return total / n, (correct / n if classify else None)


def _stall_message(
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


@contextlib.contextmanager
def _sync_debug_guard() -> Iterator[None]:
    """Make any CUDA host synchronization an error for the duration (the step loop)."""
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


@contextlib.contextmanager
def _run_context(spec: RunSpec, device: torch.device) -> Iterator[None]:
    """Seed the global RNG (dropout in plug-ins) from the spec and restore everything after."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seeding.derive_seed(spec.seed, seeding.GLOBAL))
        if isinstance(spec.threads, int):
            torch.set_num_threads(spec.threads)
        if device.type == "cuda":
            torch.use_deterministic_algorithms(spec.deterministic)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)


def resolve_device(name: str) -> tuple[torch.device | None, str]:
    """The torch device for ``name``, or None and why it is not available here."""
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            return None, f"device {name!r} requested but CUDA is not available here"
        device = torch.device(name)
        if (device.index or 0) >= torch.cuda.device_count():
            return None, f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s)"
        return device, ""
    return torch.device(name), ""


def run(spec: RunSpec, should_stop: Callable[[], bool] | None = None) -> Trajectory:
    """Train one run on the eager engine. Never raises for a problem of the run itself: an
    exception becomes status ``failed`` with its message and traceback."""
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    wall_start = time.perf_counter()
    traj = Trajectory(
        spec_json=spec.to_json(), run_id=spec.run_id, status="ok", started_at=started_at
    )
    device, why = resolve_device(spec.device)
    if device is None:
        traj.status, traj.message = "skipped", why
        return traj
    try:
        with _run_context(spec, device):
            _train(spec, device, traj, should_stop)
    except StopRequested:
        raise
    except Exception as e:  # isolate the failure to this run
        traj.status = "failed"
        traj.message = describe(e)
        if isinstance(e, torch.OutOfMemoryError):
            traj.message += " (out of memory: try a smaller batch_size)"
        traj.traceback = traceback.format_exc()
    finally:
        if device is not None and device.type == "cuda":
            torch.cuda.empty_cache()  # the next run gets the memory back
    traj.wall_time_s = time.perf_counter() - wall_start
    return traj


def _train(
    spec: RunSpec, device: torch.device, traj: Trajectory, should_stop: Callable[[], bool] | None
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
    traj.info.update(
        optimizer_impl=impl,
        device_name=_device_name(device),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        deterministic=spec.deterministic,
        n_parameters=sum(p.numel() for p in params),
    )

    batch = Batches(problem, spec, device)
    update = make_update(problem, optimizer, optimizers.needs_closure(spec.optimizer_class))
    problem.model.train()
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda *a: None)
    no_sync_guard = _sync_debug_guard if cuda and os.environ.get(SYNC_DEBUG_ENV) == "1" else None

    n_steps = spec.steps
    warmup = min(WARMUP_STEPS, n_steps)
    losses = np.empty(n_steps, dtype=np.float32)
    times = np.empty(n_steps, dtype=np.float64)
    evals = traj.evals
    clock = 0.0
    step = 0
    first_loss = math.nan
    every = spec.checkpoint_every if checkpoint.path_for(spec) else 0
    tail: list[Tensor] = []  # flat parameters at the ends of the last steps (update_cosine)
    best_val, since_best = math.inf, 0  # early stopping
    checked = 0  # losses[:checked] passed the divergence check

    def save_checkpoint() -> None:
        checkpoint.save(
            spec,
            {
                "step": step,
                "clock": clock,
                "first_loss": first_loss,
                "warmup_steps": traj.warmup_steps,
                "warmup_s": traj.warmup_s,
                "losses": torch.from_numpy(losses[:step].copy()),
                "times": torch.from_numpy(times[:step].copy()),
                "evals": {k: list(v) for k, v in evals.items()},
                "tail": list(tail),
                "model": problem.model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(device) if cuda else torch.empty(0),
            },
        )

    resumed = checkpoint.load(spec) if every else None
    if resumed is not None:
        # Into the freshly built model and optimizer: nothing survives in memory between tries.
        problem.model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        torch.set_rng_state(resumed["rng_cpu"])
        if cuda:
            torch.cuda.set_rng_state(resumed["rng_cuda"], device)
        step, clock, first_loss = resumed["step"], resumed["clock"], resumed["first_loss"]
        losses[:step] = resumed["losses"].numpy()
        times[:step] = resumed["times"].numpy()
        evals.update({k: list(v) for k, v in resumed["evals"].items()})
        traj.warmup_steps, traj.warmup_s = resumed["warmup_steps"], resumed["warmup_s"]
        tail = list(resumed["tail"])
        checked = step
        for value in evals["val_loss"][1:]:  # the early-stopping count, replayed
            best_val, since_best = _patience(best_val, since_best, value)
        traj.info["resumed_from_step"] = step

    def record_eval(at: int) -> dict[str, float]:
        result = evaluate(problem)
        evals["step"].append(at)
        evals["time_s"].append(clock)
        for col in EVAL_COLUMNS[2:]:
            evals[col].append(result.get(col, math.nan))
        return result

    if step == 0:
        record_eval(0)
        before = [p.detach().clone() for p in params]
    status, message = "ok", ""
    # Checks and decisions happen only at these ends; the extra checkpoint ends are save points,
    # so checkpointing cannot change where a run stops (nor its losses, nor its run_id).
    decision_ends = set(window_ends(spec, warmup))
    for end in window_ends(spec, warmup, every):
        if end <= step:
            continue
        # ---- hot loop: nothing here reads a value back from the device -----------------------
        pending: list[Tensor] = []
        sync(device)
        t0 = time.perf_counter()
        with no_sync_guard() if no_sync_guard else contextlib.nullcontext():
            for i in range(step, end):
                if lr_at is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = lr_at[i]
                xb, yb = batch(i)
                loss = update(xb, yb)
                pending.append(loss.detach())
        sync(device)
        elapsed = time.perf_counter() - t0
        # ---- bookkeeping, clock stopped --------------------------------------------------------
        chunk = torch.stack(pending).float().cpu().numpy()
        losses[step:end] = chunk
        times[step:end] = clock + elapsed * np.arange(1, end - step + 1) / (end - step)
        clock += elapsed
        if step == 0:
            first_loss = float(chunk[0])
            stalled = _stall_message(problem, params, before)
            del before
            if stalled:
                status, message = "stalled", stalled
        step = end
        if step == warmup:
            traj.warmup_steps, traj.warmup_s = warmup, clock
        if step >= n_steps - LAST_UPDATES:
            tail.append(torch.cat([p.detach().reshape(-1) for p in params]).double().cpu())
        if step in decision_ends:
            if status == "ok":
                status, message = _divergence(
                    losses[checked:step], checked, first_loss, spec.divergence_factor
                )
                checked = step
            if status == "ok" and (step % spec.eval_every == 0 if spec.eval_every else False):
                result = record_eval(step)
                if spec.early_stopping_patience and "val_loss" in result:
                    best_val, since_best = _patience(best_val, since_best, result["val_loss"])
                    if since_best >= spec.early_stopping_patience:
                        message = (
                            f"early stopping: validation loss did not improve for "
                            f"{since_best} evaluations"
                        )
                        break
                if (
                    spec.stop_at_target
                    and spec.target_loss is not None
                    and result["train_loss"] <= spec.target_loss
                ):
                    message = f"reached target_loss {spec.target_loss:g} at step {step}"
                    break
            if status != "ok":
                break
            if spec.max_seconds is not None and clock >= spec.max_seconds and step < n_steps:
                status = "timeout"
                message = (
                    f"max_seconds {spec.max_seconds:g} reached after {step} of {n_steps} steps"
                )
                break
        stop = should_stop is not None and should_stop() and step < n_steps
        if every and (step % every == 0 or stop) and step < n_steps:
            save_checkpoint()
        if stop:  # a run that has done all its steps is finished, Ctrl-C or not
            raise StopRequested
    if not evals["step"] or evals["step"][-1] != step:
        record_eval(step)
    traj.status, traj.message = status, message
    traj.losses, traj.time_s = losses[:step].copy(), times[:step].copy()
    traj.train_time_s = clock
    traj.info["update_cosine"] = update_cosine(tail)
    if spec.save_model:
        traj.model_state = {k: v.detach().cpu() for k, v in problem.model.state_dict().items()}


def _patience(best: float, since: int, value: float) -> tuple[float, int]:
    """Early stopping's count: evaluations since the validation loss last improved."""
    return (value, 0) if value < best else (best, since + 1)


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


def _divergence(
    chunk: np.ndarray, offset: int, first_loss: float, factor: float
) -> tuple[str, str]:
    """``diverged`` at the first non-finite loss, or loss above ``factor`` x the first loss
    (only when the first loss is positive)."""
    bad = ~np.isfinite(chunk)
    if first_loss > 0 and math.isfinite(first_loss):
        bad |= chunk > factor * first_loss
    if not bad.any():
        return "ok", ""
    k = int(np.argmax(bad))
    value = float(chunk[k])
    why = (
        "non-finite"
        if not math.isfinite(value)
        else f"above {factor:g} x the first ({first_loss:.3g})"
    )
    return "diverged", f"loss {value:.3g} at step {offset + k} ({why})"


__all__: list[Any] = ["CHUNK_STEPS", "WARMUP_STEPS", "Batches", "evaluate", "run", "window_ends"]
