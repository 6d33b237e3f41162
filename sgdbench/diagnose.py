"""Learning-rate verdicts: what a run's loss curve says about its learning rate.

Computed from the full-data training losses at the evaluations (L0 first, Lend last, Lmid the
evaluation nearest half-way through the steps run), the target, and ``update_cosine`` (the mean
cosine between successive parameter updates over the last steps, measured by the engine).
The first rule that applies wins:

1. ``diverged``: status ``diverged``, a non-finite final loss, or Lend > 1.5 x L0 (the run ends
   clearly worse than it started).
2. ``converged``: a full-data loss reached ``target_loss``.
3. ``oscillating``: updates point back and forth (``update_cosine`` < -0.5) while the loss
   improved by less than 10% over the second half: the iterate bounces across the valley
   (f(x) = x² with lr = 1 flips x = ±1.5 for ever; its loss never moves).
4. ``too_slow``: the loss still fell by 10% or more over the second half, but not to the target.
   The detail extrapolates the recent exponential rate r = ln(Lmid/Lend)/(steps between):
   about ln(Lend/target)/r more steps.
5. ``plateau``: improved by less than 10% over the second half and stayed above the target.

Without a ``target_loss``, rules 2 and 4 cannot apply; a run still improving is ``improving``.
Runs that stalled, failed or were skipped get their status as verdict (or none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

VERDICTS = ("converged", "diverged", "oscillating", "too_slow", "plateau", "improving", "stalled")
GREW = 1.5  # Lend / L0 above this: diverged
FLAT = 0.9  # Lend / Lmid above this: not improving
BOUNCING = -0.5  # update_cosine below this: oscillating


@dataclass(frozen=True)
class Verdict:
    verdict: str | None
    detail: str = ""  # one line with the numbers behind it
    projected_steps_to_target: float | None = None  # too_slow: the extrapolated total


def verdict(
    status: str,
    eval_steps: list[int],
    eval_losses: list[float],
    target: float | None,
    update_cosine: float,
) -> Verdict:
    """Apply the rules above to one run."""
    if status == "stalled":
        return Verdict("stalled", "parameters did not change")
    if status in ("failed", "skipped") or not eval_losses:
        return Verdict(None)
    first, last = eval_losses[0], eval_losses[-1]
    if status == "diverged" or not math.isfinite(last):
        return Verdict("diverged", "the loss blew up")
    if first > 0 and last > GREW * first:
        return Verdict(
            "diverged", f"final loss {last:.3g} is {last / first:.3g}x the initial {first:.3g}"
        )
    if target is not None and any(v <= target for v in eval_losses):
        return Verdict("converged", f"reached {target:g}")
    mid_index = min(range(len(eval_steps)), key=lambda i: abs(eval_steps[i] - eval_steps[-1] / 2))
    mid, mid_step = eval_losses[mid_index], eval_steps[mid_index]
    ratio = last / mid if mid > 0 else 1.0
    flat = ratio > FLAT
    if flat and update_cosine < BOUNCING:
        return Verdict(
            "oscillating",
            f"successive updates point back and forth (cosine {update_cosine:.2f}); "
            f"loss {last:.3g} not settling",
        )
    if not flat:
        if target is None:
            return Verdict("improving", f"loss fell {1 - ratio:.0%} over the second half")
        rate = math.log(mid / last) / max(1, eval_steps[-1] - mid_step)
        more = math.log(last / target) / rate if last > 0 and target > 0 else math.inf
        budget = eval_steps[-1]
        detail = (
            f"at the recent rate, reaching {target:g} needs ~{more:,.0f} more steps "
            f"({(budget + more) / max(budget, 1):.1f}x the {budget}-step run)"
        )
        return Verdict("too_slow", detail, budget + more)
    return Verdict("plateau", f"loss {last:.3g} changed {1 - ratio:.1%} over the second half")


def best_validation(eval_steps: list[int], val_losses: list[float]) -> dict[str, Any]:
    """Where the validation loss was lowest: after that step, training overfits."""
    finite = [(v, s) for s, v in zip(eval_steps, val_losses, strict=True) if math.isfinite(v)]
    if not finite:
        return {"best_val_loss": math.nan, "best_val_step": None}
    loss, step = min(finite)
    return {"best_val_loss": loss, "best_val_step": int(step)}
