"""What each number means (DESIGN §5), computed in one place from a spec and its trajectory."""

from __future__ import annotations

import hashlib
import math
from typing import Any, cast

import numpy as np

from sgdbench import diagnose, timing
from sgdbench.engine.trajectory import Trajectory
from sgdbench.spec import RunSpec


def loss_digest(losses: np.ndarray) -> str:
    """sha256 of the per-step losses as little-endian float32: equal digests mean a bitwise
    identical trajectory."""
    return hashlib.sha256(np.asarray(losses, dtype="<f4").tobytes()).hexdigest()


def samples_after(spec: RunSpec, steps: np.ndarray | int) -> np.ndarray | int:
    """Samples consumed by the first ``steps`` steps (the last batch of an epoch may be short,
    or dropped: then an epoch sees only ``steps_per_epoch * batch_size`` samples)."""
    epochs, rest = np.divmod(steps, spec.steps_per_epoch)
    per_epoch = min(spec.n_samples, spec.steps_per_epoch * spec.batch_size)
    return epochs * per_epoch + np.minimum(rest * spec.batch_size, spec.n_samples)


def per_step_columns(spec: RunSpec, n_steps: int) -> dict[str, np.ndarray]:
    """Epoch and cumulative samples seen (including the step's own batch) for each step."""
    from sgdbench import schedules

    step = np.arange(n_steps, dtype=np.int64)
    return {
        "step": step,
        "epoch": (step // spec.steps_per_epoch).astype(np.int32),
        "samples_seen": np.asarray(samples_after(spec, step + 1), dtype=np.int64),
        "lr": schedules.lr_per_step(spec.schedule, spec.lr, spec.steps, n_steps),
    }


def first_at_or_below(values: list[float], target: float) -> int | None:
    """Index of the first value <= target, or None."""
    for i, v in enumerate(values):
        if v <= target:
            return i
    return None


def target_metrics(
    spec: RunSpec,
    eval_steps: list[int],
    eval_times: list[float],
    eval_losses: list[float],
    target: float | None,
) -> dict[str, Any]:
    """Steps, samples and training seconds to the first evaluation at or below ``target``."""
    out: dict[str, Any] = {
        "steps_to_target": None,
        "samples_to_target": None,
        "time_to_target_s": None,
    }
    if target is None:
        return out
    i = first_at_or_below(eval_losses, target)
    if i is not None:
        step = int(eval_steps[i])
        out.update(
            steps_to_target=step,
            samples_to_target=int(samples_after(spec, step)),
            time_to_target_s=float(eval_times[i]),
        )
    return out


def exact_target_metrics(
    spec: RunSpec, steps_to_target: int | None, time_s: np.ndarray
) -> dict[str, Any]:
    """Steps, samples and training seconds to target from the engine's exact step (the first
    step t whose full-data loss after t updates is <= the target): samples are those of the
    first t steps, the time is the training clock after step t (``time_s[t - 1]``), 0 for t=0."""
    if steps_to_target is None:
        return dict.fromkeys(("steps_to_target", "samples_to_target", "time_to_target_s"))
    t = int(steps_to_target)
    return {
        "steps_to_target": t,
        "samples_to_target": int(samples_after(spec, t)),
        "time_to_target_s": float(time_s[t - 1]) if t > 0 else 0.0,
    }


def _finite_min(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else math.nan


def window_units(
    work: np.ndarray | list[float], seconds: np.ndarray | list[float], repeat: Any
) -> list[timing.Windows]:
    """The timed windows of one run as bootstrap units: one per repeat."""
    work, seconds, repeat = np.asarray(work), np.asarray(seconds), np.asarray(repeat)
    return [timing.Windows.of(work[repeat == r], seconds[repeat == r]) for r in np.unique(repeat)]


def pooled_windows(work: Any, seconds: Any, repeat: Any) -> list[timing.Windows]:
    """The windows of several runs (one list per run, as runs.parquet stores them) as bootstrap
    units, one per run and repeat; runs without windows (older results) are left out."""
    units: list[timing.Windows] = []
    for w, t, r in zip(work, seconds, repeat, strict=True):
        if w is None or t is None or len(w) == 0:
            continue
        units += window_units(w, t, np.zeros(len(w)) if r is None else r)
    return units


def window_samples(spec: RunSpec, start: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Samples consumed by each window (the last batch of an epoch may be short)."""
    start, steps = np.asarray(start, np.int64), np.asarray(steps, np.int64)
    return np.asarray(samples_after(spec, start + steps)) - np.asarray(samples_after(spec, start))


def throughput(spec: RunSpec, traj: Trajectory) -> dict[str, Any]:
    """Steps/s and samples/s of the steady state (warm-up excluded): the median over the timed
    windows of every repeat, with a bootstrap interval (``timing``); plus the windows
    themselves, which the report and ``compare`` pool over seeds and repeats."""
    samples = window_samples(spec, traj.window_start, traj.window_steps)
    out: dict[str, Any] = {}
    for name, work in (("steps", traj.window_steps), ("samples", samples)):
        r = timing.rate(window_units(work, traj.window_s, traj.window_repeat))
        out |= {f"{name}_per_s": r.median, f"{name}_per_s_lo": r.lo, f"{name}_per_s_hi": r.hi}
    if math.isnan(out["steps_per_s"]) and traj.train_time_s > 0:
        # Too short to have a steady state (<= the warm-up steps): the plain average, and no
        # interval, since there is nothing to measure the noise with.
        out["steps_per_s"] = traj.steps / traj.train_time_s
        out["samples_per_s"] = float(samples_after(spec, traj.steps)) / traj.train_time_s
    return {
        **out,
        "repeats": traj.repeats,
        "window_steps": traj.window_steps.tolist(),
        "window_samples": samples.tolist(),
        "window_s": traj.window_s.tolist(),
        "window_cpu_s": traj.window_cpu_s.tolist(),
        "window_probe_s": traj.window_probe_s.tolist(),
        "window_repeat": traj.window_repeat.tolist(),
    }


def summarize(spec: RunSpec, traj: Trajectory) -> dict[str, Any]:
    """The per-run numbers that go into runs.parquet."""
    ev = traj.evals
    steps = traj.steps
    train_losses = ev["train_loss"]
    cosine = traj.info.get("update_cosine", math.nan)
    # The engine appends int steps; Trajectory.evals types every column as float.
    eval_steps = cast(list[int], ev["step"])
    diagnosis = diagnose.verdict(traj.status, eval_steps, train_losses, spec.target_loss, cosine)
    return {
        "steps": steps,
        "epochs": steps / spec.steps_per_epoch,
        "samples_seen": int(samples_after(spec, steps)),
        "final_loss": train_losses[-1] if train_losses else math.nan,
        "best_loss": _finite_min(train_losses),
        "final_val_loss": ev["val_loss"][-1] if ev["val_loss"] else math.nan,
        "final_val_accuracy": ev["val_accuracy"][-1] if ev["val_accuracy"] else math.nan,
        **exact_target_metrics(spec, traj.steps_to_target, traj.time_s),
        **throughput(spec, traj),
        "train_time_s": traj.train_time_s,
        "warmup_s": traj.warmup_s,
        "warmup_steps": traj.warmup_steps,
        "wall_time_s": traj.wall_time_s,
        "loss_digest": loss_digest(traj.losses),
        "verdict": diagnosis.verdict,
        "verdict_detail": diagnosis.detail,
        "projected_steps_to_target": diagnosis.projected_steps_to_target,
        "update_cosine": cosine,
        **diagnose.best_validation(eval_steps, ev["val_loss"]),
    }
