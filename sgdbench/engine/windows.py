"""Where a run pauses for bookkeeping: the window ends shared by both engines.

Inside a window an engine only trains (nothing is read back from the device); at each window end
it reads the clock, copies the window's losses to the host, and runs the checks.
"""

from __future__ import annotations

from sgdbench.spec import RunSpec

CHUNK_STEPS = 256  # steps between loss copies to the host and the divergence / time checks
LAST_UPDATES = 8  # the final steps whose successive update directions are compared (oscillation)
WARMUP_STEPS = 10  # first steps (allocator, kernel selection) timed apart as warmup_s


def warmup_steps(spec: RunSpec) -> int:
    """How many first steps are timed apart as the warm-up window."""
    return min(WARMUP_STEPS, spec.steps)


def window_ends(spec: RunSpec, warmup_steps: int, extra_every: int = 0) -> list[int]:
    """Step counts after which the loop pauses for bookkeeping, sorted, ending at ``spec.steps``.

    Step 1 (the stall check), the warm-up end, every chunk, every evaluation, every
    ``extra_every`` steps (checkpoints), and each of the last ``LAST_UPDATES`` steps (where the
    parameters are snapshotted to measure whether updates bounce back and forth).
    """
    n = spec.steps
    ends = {1, warmup_steps, n, *range(n - LAST_UPDATES, n)}
    for every in (CHUNK_STEPS, spec.eval_every, extra_every):
        if every > 0:
            ends.update(range(every, n, every))
    return sorted(e for e in ends if 0 < e <= n)


def is_eval_step(spec: RunSpec, step: int) -> bool:
    """Whether the run evaluates on the full data after ``step`` updates (besides its end)."""
    return spec.eval_every > 0 and step % spec.eval_every == 0
