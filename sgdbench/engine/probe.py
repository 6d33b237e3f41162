"""The machine-speed probe: a fixed piece of work timed beside the training windows.

On a shared machine the CPU time of a window moves with the load of other processes (the
sibling hyperthread, the caches, the hypervisor): the same run can cost 30-50% more CPU time in
one minute than in the next. Two results folders written at different times then differ by
that much with no change in the code, and no statistic on the windows alone can tell the
machine's drift from a change of the step. The probe measures the drift: every so often,
between two windows and off the training clock, the engine times the same small training
step (forward and backward of a fixed 32-64-1 MLP on a fixed batch of 32, five times: about
0.5 ms) on the same CPU clock as the windows. ``compare`` uses the probe's time as a covariate
(``compare.stats``): when the machine was slower for both the probe and the step, the step
did not change.

The probe is the same code in every version of sgdbench that writes ``window_probe_s``, and
it never reads the run's model, data or random generators: the run's losses are bitwise the
same with or without it. It is not run on CUDA (the work a GPU window times is not the
host's). Its own time is about 1 ms per run (or repeat) for the ``FIRST_PROBES``, then at most
``1 / PROBE_EVERY`` of the training CPU time (2%), outside
the training clock (``time_s`` and the throughput do not include it). A whole run with it
measured 0.94-1.06x the same run without it (``benchmarks/test_probe_cost.py``): within the
noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

PROBE_STEPS = 5  # forward + backward passes per probe
# A probe at most once per this many times its own CPU cost of training (2%).
PROBE_EVERY = 50.0
# The first timed windows of a run are always probed, so that every run has probe times.
FIRST_PROBES = 2


class _Work:
    """The fixed work: a 32-64-1 tanh MLP whose weights and batch are deterministic (no random
    generator is touched), built once per process."""

    def __init__(self) -> None:
        self.w1 = torch.linspace(-0.5, 0.5, 32 * 64).reshape(32, 64).requires_grad_()
        self.w2 = torch.linspace(-0.5, 0.5, 64).reshape(64, 1).requires_grad_()
        self.x = torch.linspace(-1.0, 1.0, 32 * 32).reshape(32, 32)

    def __call__(self) -> None:
        with torch.enable_grad():
            for _ in range(PROBE_STEPS):
                self.w1.grad = self.w2.grad = None
                torch.tanh(self.x @ self.w1).matmul(self.w2).square().mean().backward()


_work: _Work | None = None


def measure(cpu_clock: Callable[[], float]) -> float:
    """CPU seconds (on ``cpu_clock``) of one probe."""
    global _work
    if _work is None:
        _work = _Work()
        _work()  # the first call allocates and warms up: not a measurement
    start = cpu_clock()
    _work()
    return cpu_clock() - start


class Schedule:
    """When to probe: after the first ``FIRST_PROBES`` windows, then whenever the windows
    since the last probe used ``PROBE_EVERY`` times the probe's own CPU cost (its fastest so
    far: a probe slowed by an interruption must not put the next one off)."""

    def __init__(self) -> None:
        self.since = 0.0  # CPU seconds trained since the last probe
        self.cost = math.inf
        self.windows = 0

    def after(self, cpu_elapsed: float, cpu_clock: Callable[[], float]) -> float:
        """The probe's time after a window that used ``cpu_elapsed``, or NaN (no probe now)."""
        if not math.isfinite(cpu_elapsed):
            return math.nan
        self.since += cpu_elapsed
        self.windows += 1
        if self.windows > FIRST_PROBES and self.since < PROBE_EVERY * self.cost:
            return math.nan
        seconds = measure(cpu_clock)
        self.since, self.cost = 0.0, min(self.cost, seconds)
        return seconds
