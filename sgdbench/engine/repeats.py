"""Repeat for timing: train a unit of work N times (``[train] repeat``, ``run --repeat``).

Every repeat uses the same seed, so its losses must be bitwise identical to the first's; the
run keeps the first repeat's trajectory and adds the timed windows of the others (tagged with
their repeat), which ``metrics.throughput``, the report and ``compare`` pool. A repeat whose
losses differ fails the run: its timings would not time the same computation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from sgdbench.engine.trajectory import Trajectory
from sgdbench.spec import RunSpec

TIMED = ("ok", "diverged", "timeout")  # runs whose windows are worth timing again


def repeat_unit(
    unit: list[RunSpec],
    train_once: Callable[[list[RunSpec]], list[Trajectory]],
    should_stop: Callable[[], bool] | None = None,
) -> list[Trajectory]:
    """``train_once(unit)`` ``repeat`` times; the first repeat's trajectories with the windows
    of all repeats. A Ctrl-C between repeats keeps the repeats done."""
    first = train_once(unit)
    wanted = max(spec.repeat for spec in unit)
    if wanted <= 1 or not any(t.status in TIMED for t in first):
        return first
    # Repeats start from scratch: no checkpoint to resume from, no model file to write again.
    again_unit = [
        dataclasses.replace(s, checkpoint_every=0, checkpoint_dir=None, save_model=False)
        for s in unit
    ]
    for k in range(1, wanted):
        if should_stop is not None and should_stop():
            break
        again = train_once(again_unit)
        for traj, other in zip(first, again, strict=True):
            if traj.status in TIMED:
                _merge(traj, other, k, wanted)
    return first


def _merge(traj: Trajectory, other: Trajectory, k: int, wanted: int) -> None:
    """Add repeat ``k``'s windows to ``traj``, or fail ``traj`` when its losses differ."""
    from sgdbench.metrics import loss_digest

    traj.wall_time_s += other.wall_time_s
    where = f"repeat {k + 1} of {wanted}"
    if other.status == "failed":
        traj.status, traj.traceback = "failed", other.traceback
        traj.message = f"{where} failed: {other.message}"
        return
    # A time budget may stop repeats at different steps: compare the steps both trained.
    n = min(traj.steps, other.steps)
    mine, theirs = traj.losses[:n], other.losses[:n]
    if loss_digest(mine) != loss_digest(theirs):
        differ = np.flatnonzero(mine.view(np.uint32) != theirs.view(np.uint32))
        at = int(differ[0]) if len(differ) else n
        traj.status = "failed"
        traj.message = (
            f"{where}: losses differ from the first repeat's from step {at} (loss digest "
            f"{loss_digest(mine)[:12]} vs {loss_digest(theirs)[:12]}): the run is not "
            "deterministic, so its repeats do not time the same computation"
        )
        return
    traj.window_start = np.concatenate([traj.window_start, other.window_start])
    traj.window_steps = np.concatenate([traj.window_steps, other.window_steps])
    traj.window_s = np.concatenate([traj.window_s, other.window_s])
    traj.window_cpu_s = np.concatenate([traj.window_cpu_s, other.window_cpu_s])
    traj.window_probe_s = np.concatenate([traj.window_probe_s, other.window_probe_s])
    traj.window_repeat = np.concatenate(
        [traj.window_repeat, np.full(len(other.window_s), k, dtype=np.int64)]
    )
    traj.repeats = k + 1
