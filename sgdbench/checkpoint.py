"""Mid-run checkpoints: everything a killed run needs to continue bit for bit.

A checkpoint holds the model's and the optimizer's ``state_dict`` (momentum buffers, Adam's
moments and step counts), the RNG states, the step reached, and the losses, times and
evaluations so far. The data order and the learning-rate schedule need nothing: an epoch's order
is a function of (run seed, epoch) and a step's lr a function of the step. Checkpoints are
written atomically and loaded with ``torch.load(weights_only=True)``; one written for another
spec or schema version is ignored. A stacked halving group's checkpoint (one file for the
group, ``group_path_for``; its content is ``engine.stacked_checkpoint``'s) goes with its first
run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sgdbench import SCHEMA_VERSION
from sgdbench.atomic import atomic_write
from sgdbench.spec import RunSpec

CHECKPOINT_DIR = "checkpoints"


def path_for(spec: RunSpec) -> Path | None:
    """Where ``spec``'s checkpoint lives, or None when it does not checkpoint (periodically,
    or at the rungs of successive halving on the eager engine)."""
    at_rungs = spec.halving is not None and spec.engine == "eager"
    if not (spec.checkpoint_every or at_rungs) or not spec.checkpoint_dir:
        return None
    return Path(spec.checkpoint_dir) / f"{spec.run_id}.pt"


def group_path_for(spec: RunSpec) -> Path | None:
    """Where a stacked halving group whose first member is ``spec`` keeps its state at the last
    rung it reached (``engine.stacked_checkpoint``), or None outside a results folder."""
    if spec.halving is None or spec.engine != "stacked" or not spec.checkpoint_dir:
        return None
    return Path(spec.checkpoint_dir) / f"{spec.run_id}.group.pt"


def _identity(spec: RunSpec) -> str:
    return json.dumps(spec.identity(), sort_keys=True)


def save(spec: RunSpec, state: dict[str, Any], path: Path | None = None) -> None:
    """Write ``state`` for ``spec`` atomically (to ``path``, default ``path_for(spec)``)."""
    path = path_for(spec) if path is None else path
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **state,
        "run_id": spec.run_id,
        "schema_version": SCHEMA_VERSION,
        "spec": _identity(spec),
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load(spec: RunSpec, path: Path | None = None) -> dict[str, Any] | None:
    """The checkpoint for exactly this spec and schema (at ``path``, default
    ``path_for(spec)``), or None."""
    path = path_for(spec) if path is None else path
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a foreign or corrupt file is not ours to resume from
        return None
    if (
        not isinstance(state, dict)
        or state.get("run_id") != spec.run_id
        or state.get("schema_version") != SCHEMA_VERSION
        or state.get("spec") != _identity(spec)
    ):
        return None
    return state


def remove(spec: RunSpec) -> None:
    """Remove ``spec``'s checkpoint and the group checkpoint it names (if any)."""
    for path in (path_for(spec), group_path_for(spec)):
        if path is not None:
            path.unlink(missing_ok=True)
