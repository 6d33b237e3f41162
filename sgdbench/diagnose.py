"""Learning-rate verdicts: what a run's loss curve says about its learning rate.

Computed from the full-data training losses at the evaluations (L0 first, Lend last, Lmid the
evaluation nearest half-way through the steps run), the target, and ``update_cosine`` (the mean
cosine between successive parameter updates over the last steps, measured by the engine).
The first rule that applies wins:

1. ``diverged``: the run's status is ``diverged`` (the engine stopped it: a non-finite loss or
   a loss above its divergence factor), or its final loss is not finite. Status and verdict
   then agree: this verdict never appears on a run whose status is ``ok``.
2. ``lr_too_high``: the run finished (status ``ok``) but Lend > 1.5 x L0: it ends clearly worse
   than it started, short of the engine's divergence factor.
3. ``converged``: a full-data loss reached ``target_loss``.
4. ``oscillating``: updates point back and forth (``update_cosine`` < -0.5) while the loss
   improved by less than 10% over the second half: the iterate bounces across the valley
   (f(x) = x² with lr = 1 flips x = ±1.5 for ever; its loss never moves).
5. ``too_slow``: the loss still fell by 10% or more over the second half, not to the target,
   and is not levelling off (its rate over the last quarter is at least half its rate over the
   second half). The detail extrapolates the recent exponential rate
   r = ln(Lmid/Lend)/(steps between): about ln(Lend/target)/r more steps.
6. ``plateau``: improved by less than 10% over the second half, or is levelling off, and
   stayed above the target.

Then, across the grid (``lr_too_high`` below): a run that plateaued or was called too slow
while a smaller learning rate with every other axis equal (same batch size, same seed)
ends at a loss under 0.9x its own is ``lr_too_high``: its noise floor (SGD's grows with the lr)
or its bouncing, not its budget, holds it back.

Status is the run's outcome as the engine saw it (DESIGN §4); the verdict is this diagnosis.
Without a ``target_loss``, rules 2 and 4 cannot apply; a run still improving is ``improving``.
Runs that stalled, failed or were skipped get their status as verdict (or none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

VERDICTS = (
    "converged",
    "diverged",
    "lr_too_high",
    "oscillating",
    "too_slow",
    "plateau",
    "improving",
    "stalled",
)
GREW = 1.5  # Lend / L0 above this: diverged
FLAT = 0.9  # Lend / Lmid above this: not improving
BOUNCING = -0.5  # update_cosine below this: oscillating
LEVELLING = 0.5  # last quarter's rate / second half's rate below this: levelling off
LOWER = 0.9  # a smaller lr's final loss below this x ours: ours is too high


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
            "lr_too_high",
            f"final loss {last:.3g} is {last / first:.3g}x the initial {first:.3g} "
            "(the run finished, so its status stays ok)",
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
    if not flat and _levelling_off(eval_steps, eval_losses, mid_step, ratio):
        return Verdict(
            "plateau",
            f"loss {last:.3g} is levelling off (it fell {1 - ratio:.0%} over the second half, "
            "mostly early)",
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


def _levelling_off(steps: list[int], losses: list[float], mid_step: int, ratio: float) -> bool:
    """Whether the loss falls at under ``LEVELLING`` times its second-half rate over the last
    quarter (an approach to a floor, not a steady exponential descent)."""
    end = steps[-1]
    q = min(range(len(steps)), key=lambda i: abs(steps[i] - 0.75 * end))
    if steps[q] in (end, mid_step) or losses[q] <= 0 or losses[-1] <= 0 or ratio <= 0:
        return False
    half_rate = -math.log(ratio) / max(1, end - mid_step)
    last_rate = math.log(losses[q] / losses[-1]) / max(1, end - steps[q])
    return last_rate < LEVELLING * half_rate


def lr_too_high(runs: Any, others: list[str]) -> Any:
    """Runs (a report's runs frame) whose smaller-lr sibling in the grid, every axis in
    ``others`` and the seed equal, ends at a loss under ``LOWER`` x theirs: verdict
    ``lr_too_high``, naming the sibling. Only runs that plateaued or were called too slow are
    reconsidered (``oscillating`` already says the lr is too high, and why); a copy is
    returned."""
    runs = runs.copy()
    if "lr" not in runs or runs.empty:
        return runs
    keys = [
        tuple(
            [repr(axes.get(a, runs[a].iloc[i] if a in runs else None)) for a in others]
            + [repr(runs["seed"].iloc[i])]
        )
        for i, axes in enumerate(runs["axes_dict"])
    ]
    siblings: dict[tuple[str, ...], list[int]] = {}
    for i, k in enumerate(keys):
        siblings.setdefault(k, []).append(i)
    verdicts, details = list(runs["verdict"]), list(runs["verdict_detail"])
    lrs, finals = runs["lr"].tolist(), runs["final_loss"].tolist()
    batch = runs["batch_size"].tolist() if "batch_size" in runs else [None] * len(runs)
    for i, v in enumerate(verdicts):
        if runs["status"].iloc[i] == "ok" and v == "diverged":
            verdicts[i] = "lr_too_high"  # a folder written before rule 2 existed
            continue
        if runs["status"].iloc[i] != "ok" or v not in ("plateau", "too_slow"):
            continue
        lower = [
            j
            for j in siblings[keys[i]]
            if lrs[j] < lrs[i] and math.isfinite(finals[j]) and finals[j] < LOWER * finals[i]
        ]
        if not lower:
            continue
        j = min(lower, key=lambda j: finals[j])
        at = f" at batch size {batch[i]}" if batch[i] is not None else ""
        verdicts[i] = "lr_too_high"
        details[i] = (
            f"loss stays at {finals[i]:.3g} ({v}); lr {lrs[j]:g} reaches {finals[j]:.3g}{at}: "
            "this lr is too high for this batch size"
        )
    runs["verdict"], runs["verdict_detail"] = verdicts, details
    return runs


def best_validation(eval_steps: list[int], val_losses: list[float]) -> dict[str, Any]:
    """Where the validation loss was lowest: after that step, training overfits."""
    finite = [(v, s) for s, v in zip(eval_steps, val_losses, strict=True) if math.isfinite(v)]
    if not finite:
        return {"best_val_loss": math.nan, "best_val_step": None}
    loss, step = min(finite)
    return {"best_val_loss": loss, "best_val_step": int(step)}
