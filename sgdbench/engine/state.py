"""``RunState``: one run's bookkeeping between windows, the same on both engines.

It holds what the loop has learned so far (step reached, training clock, per-step losses and
times, evaluations, the parameter snapshots of the last steps, the early-stopping count, the
verdict) and asks the checks in their fixed order. ``state_dict`` / ``load_state_dict`` are what
a checkpoint saves besides the engine's model, optimizer and RNG states; together they are a
snapshot of the run from which training continues bit for bit (the data order and the lr are
functions of the step, so the step is the data position).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sgdbench.engine import checks, windows
from sgdbench.engine.checks import Verdict
from sgdbench.engine.trajectory import EVAL_COLUMNS, Trajectory
from sgdbench.spec import RunSpec


@dataclass
class RunState:
    """One run's progress. ``losses[:step]`` and ``times[:step]`` are filled; ``checked`` is how
    many losses passed the divergence check; ``evals`` is the trajectory's evaluation table."""

    spec: RunSpec
    evals: dict[str, list[float]]
    step: int = 0
    clock: float = 0.0
    first_loss: float = math.nan
    checked: int = 0
    warmup_steps: int = 0
    warmup_s: float = 0.0
    tail: list[Tensor] = field(default_factory=list)  # flat parameters after the last steps
    # Steady-state windows (after the warm-up): first step, steps, seconds, CPU seconds, and
    # the machine-speed probe's CPU seconds after the window (NaN: none then, ``probe``).
    timed_windows: list[tuple[int, int, float, float, float]] = field(default_factory=list)
    patience: checks.Patience = field(default_factory=checks.Patience)
    verdict: Verdict | None = None
    target_step: int | None = None  # exact step to target, once found (``crossing``)
    losses: np.ndarray = field(init=False)
    times: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.warmup = windows.warmup_steps(self.spec)
        self.losses = np.empty(self.spec.steps, dtype=np.float32)
        self.times = np.empty(self.spec.steps, dtype=np.float64)

    # ---- recording ----------------------------------------------------------------------------

    def record_window(
        self,
        losses: np.ndarray,
        elapsed: float,
        cpu_elapsed: float = math.nan,
        probe_s: float = math.nan,
    ) -> None:
        """The losses of the window just trained, its time on the training clock, the CPU
        time it used and the probe's time after it (NaN: not measured); a step's time is
        interpolated inside its window."""
        start, end = self.step, self.step + len(losses)
        self.losses[start:end] = losses
        self.times[start:end] = self.clock + elapsed * np.arange(1, end - start + 1) / (end - start)
        self.clock += elapsed
        if start >= self.warmup:
            self.timed_windows.append((start, end - start, elapsed, cpu_elapsed, probe_s))
        if start == 0:
            self.first_loss = float(losses[0])
        self.step = end
        if end == self.warmup:
            self.warmup_steps, self.warmup_s = self.warmup, self.clock

    def wants_parameters(self) -> bool:
        """Whether the engine should ``record_parameters`` now (the last steps: update_cosine)."""
        return self.step >= self.spec.steps - windows.LAST_UPDATES

    def record_parameters(self, flat: Tensor) -> None:
        self.tail.append(flat)

    def record_eval(self, result: dict[str, float]) -> dict[str, float]:
        """Append a full-data evaluation at the current step and clock; returns ``result``."""
        self.evals["step"].append(self.step)
        self.evals["time_s"].append(self.clock)
        for col in EVAL_COLUMNS[2:]:
            self.evals[col].append(result.get(col, math.nan))
        return result

    def evaluated_now(self) -> bool:
        return bool(self.evals["step"]) and self.evals["step"][-1] == self.step

    # ---- the checks, in their order -------------------------------------------------------------

    def check_losses(self) -> Verdict | None:
        """Divergence among the losses not checked yet."""
        verdict = checks.divergence(
            self.losses[self.checked : self.step],
            self.checked,
            self.first_loss,
            self.spec.divergence_factor,
        )
        self.checked = self.step
        return verdict

    def check_evaluation(self, result: dict[str, float]) -> Verdict | None:
        """Early stopping and target, after an evaluation at an evaluation step."""
        return checks.evaluation(result, self.spec, self.step, self.patience)

    def check_clock(self) -> Verdict | None:
        return checks.timeout(self.spec, self.clock, self.step)

    # ---- checkpoints and the result -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything but the engine's model, optimizer and RNGs (tensors and plain values:
        loadable with ``torch.load(weights_only=True)``)."""
        return {
            "step": self.step,
            "clock": self.clock,
            "first_loss": self.first_loss,
            "warmup_steps": self.warmup_steps,
            "warmup_s": self.warmup_s,
            "losses": torch.from_numpy(self.losses[: self.step].copy()),
            "times": torch.from_numpy(self.times[: self.step].copy()),
            "evals": {k: list(v) for k, v in self.evals.items()},
            "tail": list(self.tail),
            "windows": torch.tensor(self.timed_windows, dtype=torch.float64).reshape(-1, 5),
            "target_step": self.target_step,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from ``saved`` (a ``state_dict``); only window ends that were checked are
        saved, so every saved loss passed the checks."""
        self.step, self.clock, self.first_loss = saved["step"], saved["clock"], saved["first_loss"]
        self.losses[: self.step] = saved["losses"].numpy()
        self.times[: self.step] = saved["times"].numpy()
        for k, v in saved["evals"].items():
            self.evals[k][:] = list(v)
        self.warmup_steps, self.warmup_s = saved["warmup_steps"], saved["warmup_s"]
        self.tail = list(saved["tail"])
        saved_windows = saved.get("windows", torch.empty(0, 5)).tolist()
        # A checkpoint from before the probe has four columns: no probe then.
        self.timed_windows = [
            (
                int(w[0]),
                int(w[1]),
                float(w[2]),
                float(w[3]),
                float(w[4]) if len(w) > 4 else math.nan,
            )
            for w in saved_windows
        ]
        self.target_step = saved.get("target_step")
        self.checked = self.step
        self.patience = checks.Patience()
        for value in self.evals["val_loss"][1:]:  # the count replayed (the first is step 0's)
            self.patience.update(value)

    def finish(self, traj: Trajectory) -> None:
        """Write the run's result into ``traj`` (the evaluations are already there)."""
        verdict = self.verdict or Verdict("ok")
        traj.status, traj.message = verdict.status, verdict.message
        traj.losses, traj.time_s = self.losses[: self.step].copy(), self.times[: self.step].copy()
        traj.train_time_s = self.clock
        traj.warmup_steps, traj.warmup_s = self.warmup_steps, self.warmup_s
        timed = np.array(self.timed_windows, dtype=np.float64).reshape(-1, 5)
        traj.window_start = timed[:, 0].astype(np.int64)
        traj.window_steps = timed[:, 1].astype(np.int64)
        traj.window_s = timed[:, 2]
        traj.window_cpu_s = timed[:, 3]
        traj.window_probe_s = timed[:, 4]
        traj.window_repeat = np.zeros(len(timed), dtype=np.int64)
        traj.steps_to_target = self.target_step
        traj.info["update_cosine"] = checks.update_cosine(self.tail)
