"""A stacked halving group's checkpoint at each rung: a killed sweep resumes from the last rung.

In a results folder (``spec.checkpoint_dir``, set by the runner), after each rung's pruning
decision the group writes one file, ``checkpoints/<first run id>.group.pt`` (atomically,
replacing the previous rung's): the stacked model's rows and the stacked optimizer's state rows
of the members still training, each member's ``RunState.state_dict()`` (with its verdict for
those that already ended: pruned, diverged, ...), the runs the pruner retired, the step and the
group's training time. The data needs nothing: a member's batch is a function of its seed and
the step (``StackedBatches``), and the learning rate a function of the step.

A rerun of the same grid builds the group as usual, loads the saved states, lets the members
that had ended leave the stack exactly as pruning makes them leave (``_Group._finish``), puts
the saved rows into the compacted model and optimizer and continues from the step: the losses
are those of an uninterrupted sweep, bit for bit. Every member records ``resumed_from_step``:
the group's step, or for a member that had ended (pruned at an earlier rung, diverged) the step it
stopped at, as a pruned member of an eager halving group records its last rung.
The runner removes the file once the group's rows are committed (``checkpoint.remove``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any

from sgdbench import checkpoint
from sgdbench.engine.checks import Verdict
from sgdbench.engine.state import RunState

if TYPE_CHECKING:
    from sgdbench.engine.stacked import _Group


def save(group: _Group) -> None:
    """Write the group's state after a rung's decision (nothing outside a results folder)."""
    spec0 = group.specs[0]
    path = checkpoint.group_path_for(spec0)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    state = group.optimizer.state
    ended = {
        str(m): {**_packed(s), "status": s.verdict.status, "message": s.verdict.message}
        for m, s in group.ended.items()
        if s.verdict is not None
    }
    payload = {
        "step": group.step,
        "train_time_s": group.train_time_s,
        "wall_s": group.earlier_wall_s + time.perf_counter() - group.wall_start,
        "started_at": group.trajs[0].started_at,
        "run_ids": [s.run_id for s in group.specs],
        "members": list(group.members),
        "flat": group.model.flat.detach().cpu().clone(),
        "optimizer": {
            f.name: v.detach().cpu().clone()
            for f in dataclasses.fields(state)
            if (v := getattr(state, f.name)) is not None
        },
        "steps_done": group.optimizer.steps_done,
        "states": [_packed(s) for s in group.stack],
        "ended": ended,
        "retired": sorted(group.pruner.retired) if group.pruner is not None else [],
    }
    checkpoint.save(spec0, payload, path)


def load(group: _Group) -> dict[str, Any] | None:
    """The group's checkpoint written for exactly these runs, or None."""
    spec0 = group.specs[0]
    path = checkpoint.group_path_for(spec0)
    if path is None:
        return None
    saved = checkpoint.load(spec0, path)
    if saved is None or saved.get("run_ids") != [s.run_id for s in group.specs]:
        return None
    return saved


def restore(group: _Group, saved: dict[str, Any]) -> None:
    """Continue ``group`` (just built, every member in the stack, row r = spec r) from
    ``saved``: the ended members leave, the others get their saved rows and states."""
    stack = group.stack
    for key, st in saved["ended"].items():
        state = stack[int(key)]
        state.load_state_dict(_unpacked(st))
        state.verdict = Verdict(st["status"], st["message"])
    for m, st in zip(saved["members"], saved["states"], strict=True):
        stack[m].load_state_dict(_unpacked(st))
    if group.pruner is not None:
        group.pruner.retired.update(int(m) for m in saved["retired"])
    group._finish()  # the ended leave the stack as pruning makes them leave
    assert group.members == list(saved["members"]), "checkpoint rows do not match the stack"
    device = group.device
    group.model.flat.copy_(saved["flat"].to(device))  # in place: the leaves view this tensor
    optimizer = group.optimizer
    rows = {k: v.to(device) for k, v in saved["optimizer"].items()}
    optimizer.state = dataclasses.replace(optimizer.state, **rows)
    optimizer.steps_done = int(saved["steps_done"])
    group.step = int(saved["step"])
    group.train_time_s = float(saved["train_time_s"])
    group.ends = [end for end in group.ends if end > group.step]
    group.before = group.model.flat[:0]  # the stall check is step 0's: done
    group.search.mark(group.stack)
    group.earlier_wall_s = float(saved["wall_s"])
    for traj in group.trajs:
        traj.info["resumed_from_step"] = group.step
        traj.started_at = saved["started_at"]
    for key, st in saved["ended"].items():  # as on the eager engine: where each one stopped
        group.trajs[int(key)].info["resumed_from_step"] = int(st["step"])


def _packed(state: RunState) -> dict[str, Any]:
    """``state.state_dict()`` with the evaluations as one JSON string (exact for floats, NaN
    included): pickling every number of a few hundred members' evaluations one by one, or a
    tensor per column, would cost more than the rest of the checkpoint."""
    saved = state.state_dict()
    saved["evals"] = json.dumps(saved["evals"])
    return saved


def _unpacked(saved: dict[str, Any]) -> dict[str, Any]:
    """``_packed``'s inverse."""
    return {**saved, "evals": json.loads(saved["evals"])}
