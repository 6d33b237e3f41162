"""What an engine returns for one run: per-step arrays, evaluations, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

STATUSES = ("ok", "diverged", "stalled", "timeout", "pruned", "failed", "skipped")
# A rerun skips these; "pruned" (successive halving stopped it at a rung) is where it ends.
FINAL_STATUSES = ("ok", "diverged", "stalled", "timeout", "pruned")
EVAL_COLUMNS = ("step", "time_s", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


@dataclass
class Trajectory:
    """One run's result. Workers return it; only the driver writes it to disk.

    ``losses[k]`` is the minibatch loss of step ``k`` before its update; ``time_s[k]`` the
    training clock at the end of step ``k``. Per-step epoch, samples seen and lr are functions of
    the spec and the step, so the store derives them instead of the engine recording them.
    """

    spec_json: str
    run_id: str
    status: str
    message: str = ""
    losses: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    time_s: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    evals: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in EVAL_COLUMNS})
    train_time_s: float = 0.0
    warmup_steps: int = 0
    warmup_s: float = 0.0
    steps_to_target: int | None = None  # exact first step at or below the target (crossing.py)
    wall_time_s: float = 0.0
    # The steady-state windows the clock timed (after the warm-up), of every repeat: first
    # step, steps, training and CPU seconds of each, and which repeat (0-based) it belongs to.
    window_start: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    window_steps: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    window_s: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    window_cpu_s: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))  # NaN: GPU
    # the machine-speed probe's CPU seconds after each window (NaN: none then; ``probe``)
    window_probe_s: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    window_repeat: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    repeats: int = 1  # how many times the run was trained (timed); all gave these losses
    started_at: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # optimizer_impl, device_name, threads, ...
    traceback: str | None = None
    model_state: dict[str, Any] | None = None  # final model state_dict when spec.save_model

    @property
    def steps(self) -> int:
        return len(self.losses)
