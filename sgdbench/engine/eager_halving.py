"""Successive halving on the eager engine: a halving group trained rung by rung.

A halving group (the eager runs of a grid that share a budget and rungs, ``halving.group_key``)
is one unit of work, so every executor runs it whole. Each member trains to the first rung and
pauses there: its model, optimizer, RNG and ``RunState`` are kept as a saved state (a
checkpoint's content), and the problem is freed. Once every member reached the rung, a
``Pruner`` ranks the configurations by the rung's full-data loss (median over seeds); the pruned
members end there with status ``pruned``, the others resume from their saved state and train
to the next rung, and so on to the full budget. Resuming from a saved state is what a
checkpointed run does after a kill, bit for bit, so a survivor's losses are those of the same
run trained alone; nothing restarts.

In a results folder (``spec.checkpoint_dir``, set by the runner) each member's state at each
rung is also written to its checkpoint file: a sweep killed half way resumes every member from
the last rung it reached (or a later periodic checkpoint), and the decisions, being functions of
the rung losses, come out the same as in an uninterrupted sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sgdbench import checkpoint, halving
from sgdbench.engine import eager
from sgdbench.engine.checks import Verdict
from sgdbench.engine.context import train_unit
from sgdbench.engine.state import RunState
from sgdbench.engine.trajectory import Trajectory
from sgdbench.spec import RunSpec


def run_group(
    specs: list[RunSpec], should_stop: Callable[[], bool] | None = None
) -> list[Trajectory]:
    """Train a halving group on the eager engine; one trajectory per spec, in order."""
    pruner = halving.Pruner.for_specs(specs)
    assert pruner is not None, "run_group: the specs carry no halving plan"
    total = specs[0].steps
    members = [_Member(spec) for spec in specs]
    alive = list(range(len(specs)))
    for k, budget in enumerate([*pruner.rungs, total]):
        for m in alive:
            members[m].train_to(budget, total, should_stop)
        for m in [m for m in alive if members[m].ended]:
            alive.remove(m)
            if members[m].traj.status != "ok":
                pruner.retire(m)
        if budget == total or not alive:
            break
        losses = [members[m].loss_at(budget) for m in alive]
        for m in pruner.decide(alive, losses):
            members[m].prune(k, budget, pruner.eta)
            alive.remove(m)
    for member in members:
        member.traj.info["rung"] = pruner.reached(member.traj.steps, total)
    return [member.traj for member in members]


class _Member:
    """One run of the group: its saved state between rungs, its trajectory once it ended."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.saved: dict[str, Any] | None = checkpoint.load(spec)  # from a killed sweep
        self.resumed_from = None if self.saved is None else int(self.saved["step"])
        self.traj: Trajectory = _blank(spec, self.saved)
        self.ended = False

    def train_to(self, budget: int, total: int, should_stop: Callable[[], bool] | None) -> None:
        """Train from the saved state (or step 0) to ``budget`` steps, pausing there unless it
        is the full budget ``total``; a state already at or past ``budget`` trains nothing."""
        if self.saved is not None and self.saved["step"] >= budget and budget < total:
            return
        spec, resume, out = self.spec, self.saved, {}

        def train(device: torch.device, trajs: list[Trajectory]) -> None:
            pause_at = budget if budget < total else None
            target = spec.target_loss
            out["saved"] = eager._train(
                spec, device, trajs[0], should_stop, target, resume, pause_at
            )

        traj = train_unit([spec], train, "batch_size")[0]
        traj.started_at = self.traj.started_at or traj.started_at
        traj.wall_time_s += self.traj.wall_time_s
        if self.resumed_from is not None:
            traj.info["resumed_from_step"] = self.resumed_from
        self.traj, self.saved = traj, out.get("saved")
        if self.saved is None:  # finished, failed or stopped by a check
            self.ended = True
            return
        # Plain values only (torch.__version__ is a str subclass): weights_only loads them.
        self.saved["info"] = {k: str(v) if isinstance(v, str) else v for k, v in traj.info.items()}
        self.saved["started_at"], self.saved["wall_s"] = traj.started_at, traj.wall_time_s
        checkpoint.save(spec, self.saved)  # the rung reached, for a killed sweep's rerun

    def loss_at(self, budget: int) -> float:
        """The full-data training loss of the evaluation at ``budget`` steps (the rung's)."""
        assert self.saved is not None
        evals = self.saved["evals"]
        at = [i for i, step in enumerate(evals["step"]) if step == budget]
        return float(evals["train_loss"][at[-1]]) if at else float("inf")

    def prune(self, rung: int, budget: int, eta: int) -> None:
        """End at this rung with status ``pruned``, keeping the losses so far."""
        assert self.saved is not None
        state = RunState(self.spec, self.traj.evals)
        state.load_state_dict(self.saved)
        state.verdict = Verdict("pruned", halving.pruned_message(rung, budget, eta))
        state.finish(self.traj)
        self.ended, self.saved = True, None  # its model and optimizer state can go


def _blank(spec: RunSpec, saved: dict[str, Any] | None) -> Trajectory:
    """The trajectory of a member before it trains in this sweep (its facts from ``saved``)."""
    traj = Trajectory(spec_json=spec.to_json(), run_id=spec.run_id, status="ok")
    if saved is not None:
        traj.info.update(saved.get("info", {}), resumed_from_step=int(saved["step"]))
        traj.started_at = saved.get("started_at", "")
        traj.wall_time_s = float(saved.get("wall_s", 0.0))
    return traj
