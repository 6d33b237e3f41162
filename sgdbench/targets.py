"""Exact steps to a target chosen after the runs: ``report --target-loss X``.

The stored evaluations say only between which two evaluations the full-data loss first reached
X. When those are one step apart (or the first evaluation already reached it) that is the exact
step. Otherwise the run is trained again, off the record (nothing is written), by the same
engine with X as the target it locates exactly (``engine/crossing.py``): an eager run stops at
the evaluation that reaches X; a stacked run is retrained with its whole unit of members, since
a member's losses depend on the stack it trained in. The rerun's per-step losses must equal the
stored ones bit for bit up to that evaluation, else ``TargetRerunError`` (exit 1). The time to
target is the stored training clock at that step (``steps/<run_id>.parquet``), not the rerun's.

Cost: for each run whose crossing lies between two evaluations further apart than one step,
its training up to that evaluation again (a stacked unit: the unit's run), plus one window of
per-step evaluations.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sgdbench.errors import SgdbenchError

TARGET_COLUMNS = ("steps_to_target", "samples_to_target", "time_to_target_s")


class TargetRerunError(SgdbenchError):
    """A rerun for an exact step to target did not reproduce the stored run."""


def exact_targets(results: Path, runs: pd.DataFrame, target_loss: float) -> pd.DataFrame:
    """Steps, samples and training seconds to ``target_loss`` for every row of ``runs`` (which
    needs ``run_id`` and ``spec``), exact to the step; a frame of ``TARGET_COLUMNS`` with
    ``runs``' index, empty where the run never reached the target at an evaluation."""
    from sgdbench.metrics import samples_after
    from sgdbench.spec import RunSpec
    from sgdbench.store import EVALS_DIR, RUNS_FILE, read_files, read_table

    results = Path(results)
    evals = read_files(
        [p for rid in runs["run_id"] if (p := results / EVALS_DIR / f"{rid}.parquet").exists()],
        ["run_id", "step", "train_loss"],
    ).to_pandas()
    by_run = {rid: g.sort_values("step") for rid, g in evals.groupby("run_id", sort=False)}
    specs = {
        rid: RunSpec.from_json(text)
        for rid, text in zip(runs["run_id"], runs["spec"], strict=True)
        if isinstance(text, str) and text
    }
    found: dict[str, int] = {}
    to_rerun: dict[str, int] = {}  # run id -> the step of the evaluation that reached target
    for rid in specs:
        g = by_run.get(rid)
        if g is None:
            continue
        steps, losses = g["step"].to_numpy(), g["train_loss"].to_numpy()
        reached = np.flatnonzero(losses <= target_loss)
        if not len(reached):
            continue
        k = int(reached[0])
        if k == 0 or steps[k] - steps[k - 1] <= 1:
            found[rid] = int(steps[k])
        else:
            to_rerun[rid] = int(steps[k])
    if to_rerun:
        everyone = read_table(results / RUNS_FILE, ["run_id", "spec"]).to_pandas()
        all_specs = {
            rid: RunSpec.from_json(text)
            for rid, text in zip(everyone["run_id"], everyone["spec"], strict=True)
            if isinstance(text, str) and text
        }
        found |= _rerun(results, all_specs, to_rerun, target_loss)
    rows: list[dict[str, Any]] = []
    for rid in runs["run_id"]:
        t = found.get(rid)
        if t is None:
            rows.append(dict.fromkeys(TARGET_COLUMNS))
            continue
        rows.append(
            {
                "steps_to_target": t,
                "samples_to_target": int(samples_after(specs[rid], t)),
                "time_to_target_s": _clock_after(results, rid, t),
            }
        )
    frame = pd.DataFrame(rows, index=runs.index, columns=list(TARGET_COLUMNS), dtype="object")
    return frame.apply(pd.to_numeric)


def _rerun(
    results: Path, specs: dict[str, Any], crossings: dict[str, int], target_loss: float
) -> dict[str, int]:
    """Retrain the runs in ``crossings`` (run id -> the step of the evaluation that reached
    the target) and return their exact steps."""
    from sgdbench.engine import eager, plan, stacked

    quiet = {"checkpoint_dir": None, "save_model": False}  # write nothing, resume from nothing
    out: dict[str, int] = {}
    for rid, reached_at in crossings.items():
        if rid in out:
            continue  # found with its stacked unit
        spec = specs[rid]
        if spec.engine != "stacked":
            # Stopping at the evaluation that reaches the target changes nothing before it.
            rerun = dataclasses.replace(
                spec, **quiet, target_loss=target_loss, stop_at_target=True, max_seconds=None
            )
            traj = eager.run(rerun, target_loss=target_loss)
            _check(results, rid, traj, reached_at)
            out[rid] = _found(rid, traj)
            continue
        group = [
            dataclasses.replace(s, **quiet) for s in specs.values() if s.group_id == spec.group_id
        ]
        unit = next(u for u in plan(group) if any(s.run_id == rid for s in u))
        for s, traj in zip(unit, stacked.run_group(unit, target_loss=target_loss), strict=True):
            if s.run_id in crossings:
                _check(results, s.run_id, traj, crossings[s.run_id])
                out[s.run_id] = _found(s.run_id, traj)
    return out


def _check(results: Path, run_id: str, traj: Any, upto: int) -> None:
    """The rerun's losses equal the stored ones, bit for bit, for the first ``upto`` steps."""
    from sgdbench.store import STEPS_DIR, read_table

    stored = read_table(results / STEPS_DIR / f"{run_id}.parquet", ["loss"]).column(0)
    stored_losses = np.asarray(stored.to_numpy(), dtype=np.float32)[:upto]
    again = np.asarray(traj.losses, dtype=np.float32)[:upto]
    if traj.status == "failed" or not np.array_equal(
        again.view(np.uint32), stored_losses.view(np.uint32)
    ):
        why = traj.message if traj.status == "failed" else "its losses differ"
        raise TargetRerunError(
            f"{results}: run {run_id}: rerunning it to find the exact step to target did not "
            f"reproduce its first {upto} steps ({why}); the exact step is unknown"
        )


def _found(run_id: str, traj: Any) -> int:
    if traj.steps_to_target is None:
        raise TargetRerunError(
            f"run {run_id}: the rerun did not reach the target it reached before"
        )
    return int(traj.steps_to_target)


def _clock_after(results: Path, run_id: str, step: int) -> float:
    """The stored training clock after ``step`` steps (``time_s`` of step ``step - 1``)."""
    from sgdbench.store import STEPS_DIR, read_table

    if step == 0:
        return 0.0
    times = read_table(results / STEPS_DIR / f"{run_id}.parquet", ["step", "time_s"]).to_pandas()
    return float(times.loc[times["step"] == step - 1, "time_s"].iloc[0])
