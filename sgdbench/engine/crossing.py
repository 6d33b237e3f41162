"""The exact step to target: where, between two evaluations, the full-data loss first reached it.

DESIGN §5 defines ``steps_to_target`` as the first step t whose full-data training loss after t
updates is <= the target, exact to the step whatever ``eval_every`` is. Evaluating after every
step would cost a full pass over the data per step, so the loop evaluates every ``eval_every``
steps and, because runs are deterministic, recovers the step between evaluations by replaying:

- after every evaluation that finds the target not yet reached, the engine keeps a *snapshot*
  (parameters, optimizer state, RNG; the data order and the lr are functions of the step, so the
  step is the data position);
- when an evaluation finds it reached, the steps since the snapshot are replayed from it, off the
  training clock, with a full-data evaluation after each; the first step at or below the target
  is the answer. The replay's minibatch losses must equal the recorded ones bit for bit, else
  ``ReplayMismatch`` (the run is not deterministic, so no exact step can be claimed); then the
  engine goes back to the state it was in and training continues untouched.

Cost per run: one snapshot copy per evaluation until the target is reached, and at most one
window of ``eval_every`` steps, each followed by an evaluation of the rows still looking, once
(the replay stops at the first step that reaches the target; the evaluation that ended the
window is already known). The search is for the first *evaluation* window that ends
at or below the target: a dip below it that rises back above before the next evaluation is not
seen.

Both engines use ``TargetSearch``; each provides a ``Replayable`` whose rows are its members (one
row on the eager engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from sgdbench.engine.state import RunState


class ReplayMismatch(RuntimeError):
    """The replay of a window did not reproduce the recorded run bit for bit."""


class Replayable(Protocol):
    """What an engine lends the search: its training state, one step, one evaluation."""

    def snapshot(self) -> Any:
        """A copy of everything a step reads or writes besides the step index."""

    def restore(self, snapshot: Any) -> None:
        """Go back to ``snapshot`` (each snapshot is restored at most once)."""

    def replay_step(self, step: int) -> np.ndarray:
        """Train step ``step`` again; the minibatch loss per row (float32)."""

    def train_losses(self, rows: list[int]) -> np.ndarray:
        """The full-data training loss of the rows ``rows``, in that order, leaving the
        training state untouched."""


class TargetSearch:
    """Finds each row's exact step to ``target``: call ``after_evaluation`` with every
    full-data evaluation, then ``mark`` once the rows are final for the next window."""

    def __init__(self, engine: Replayable, target: float | None) -> None:
        self.engine = engine
        self.target = target
        self.since = 0  # the step of the snapshot
        self.snapshot: Any = None

    def pending(self, states: Sequence[RunState]) -> bool:
        """Whether some row still has to reach the target (the search then keeps snapshots)."""
        return self.target is not None and any(s.target_step is None for s in states)

    def after_evaluation(
        self, states: Sequence[RunState], train_losses: Sequence[float] | np.ndarray
    ) -> None:
        """``train_losses[r]``: row ``r``'s full-data loss now (all rows share the step). Each
        row that reaches the target here for the first time gets its exact ``target_step``."""
        if self.target is None:
            return
        step = states[0].step
        crossed = [
            r
            for r, (state, loss) in enumerate(zip(states, train_losses, strict=True))
            if state.target_step is None and loss <= self.target
        ]
        if not crossed:
            return
        if self.snapshot is None or step - self.since <= 1:  # no step in between to look at
            for r in crossed:
                states[r].target_step = step
            return
        for r, first in self._replay(states, crossed, step).items():
            states[r].target_step = first

    def mark(self, states: Sequence[RunState]) -> None:
        """Snapshot the rows as they are now (after this window end's evaluation and any
        change of rows), the start of the next replay; nothing once every row reached target."""
        self.snapshot = self.engine.snapshot() if self.pending(states) else None
        self.since = states[0].step if states else 0

    def _replay(self, states: Sequence[RunState], crossed: list[int], step: int) -> dict[int, int]:
        assert self.target is not None
        now = self.engine.snapshot()
        self.engine.restore(self.snapshot)
        self.snapshot = None  # restored: its tensors now belong to the engine
        found: dict[int, int] = {}
        try:
            # The evaluation at ``step`` is recorded already: replay up to the step before it.
            for i in range(self.since, step - 1):
                losses = np.asarray(self.engine.replay_step(i), dtype=np.float32)
                recorded = np.array([s.losses[i] for s in states], dtype=np.float32)
                if not np.array_equal(losses.view(np.uint32), recorded.view(np.uint32)):
                    raise ReplayMismatch(
                        f"replaying step {i} to find the exact step to target gave loss(es) "
                        f"{losses.tolist()}, recorded {recorded.tolist()}: the run is not "
                        "deterministic"
                    )
                looking = [r for r in crossed if r not in found]
                for r, loss in zip(looking, self.engine.train_losses(looking), strict=True):
                    if loss <= self.target:
                        found[r] = i + 1
                if len(found) == len(crossed):
                    break
        finally:
            self.engine.restore(now)
        return {r: found.get(r, step) for r in crossed}

    def state_dict(self) -> dict[str, Any]:
        """The snapshot and its step, for a checkpoint (tensors and plain values)."""
        return {"since": self.since, "snapshot": self.snapshot}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.since, self.snapshot = saved["since"], saved["snapshot"]
