"""What the machine-speed probe costs (``sgdbench.engine.probe``): the same run with the probe
on its schedule and with it held off (only the first timed windows probed).

The probe runs between windows, off the training clock, so its cost shows in the run's whole
time: each round times it on process CPU time, with and without probes in turn. The schedule
bounds the probes' own time at ``1 / PROBE_EVERY`` of the training CPU time (2%), and the
steps after a probe run a little slower (caches). A short-window run (eval_every 10 on a
2-parameter model, the probe's worst case) is timed beside a typical one.

    python -m pytest benchmarks/test_probe_cost.py -s

Each test prints its ratio (probed / held off: the median over rounds of each round's pair).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from sgdbench.engine import execute_unit, probe
from sgdbench.plan import load_grid

CASES = {  # name: (problem table, eval_every, batch size)
    "linear-eval10": ('name = "linear"\nn_samples = 256\nn_features = 1', 10, 1),
    "digits-mlp-eval100": ('name = "digits"\nhidden = [64]', 100, 32),
}
STEPS = 2000
ROUNDS = 9  # at least: a pair's ratio moves by +-10% on a shared 2-core machine
# <= 2% expected (0.94-1.06x measured): the median of 9 pairs moves by +-5% here. It catches
# a probe after every window (PROBE_EVERY = 0: 1.6x on the linear case), not 1%.
LIMIT = 1.15


@pytest.mark.parametrize("case", CASES)
def test_probe_cost(benchmark, tmp_path: Path, rounds: int, monkeypatch, case: str) -> None:
    """One round runs the run held off and probed, one after the other (which goes first
    alternates), each timed on process CPU time; the ratio is the median over rounds of each
    round's ratio."""
    table, eval_every, batch = CASES[case]
    grid = tmp_path / "grid.toml"
    grid.write_text(
        f'name = "bench"\n[problem]\n{table}\n[train]\nsteps = {STEPS}\n'
        f"eval_every = {eval_every}\nthreads = 1\n[grid]\nlr = 0.01\nbatch_size = {batch}\n"
    )
    unit = load_grid(grid).runs
    seconds: dict[bool, list[float]] = {False: [], True: []}
    every = probe.PROBE_EVERY
    taken: dict[bool, int] = {}

    def both() -> None:
        order = (False, True) if len(seconds[True]) % 2 else (True, False)  # who goes first
        for probed in order:
            monkeypatch.setattr(probe, "PROBE_EVERY", every if probed else float("inf"))
            start = time.process_time()
            trajs = execute_unit(unit)
            seconds[probed].append(time.process_time() - start)
            assert all(t.status == "ok" for t in trajs)
            taken[probed] = sum(int(np.isfinite(t.window_probe_s).sum()) for t in trajs)

    benchmark.pedantic(both, rounds=max(rounds, ROUNDS), iterations=1, warmup_rounds=1)
    assert taken[False] == probe.FIRST_PROBES < taken[True]
    # each round's pair saw the same minute of the machine: the median of the pairs' ratios
    ratio = float(np.median(np.asarray(seconds[True]) / np.asarray(seconds[False])))
    benchmark.extra_info["probed / held off"] = ratio
    print(
        f"\n{case} ({STEPS} steps, {taken[True]} probes): probed / held off {ratio:.3f}x "
        f"(median of {len(seconds[True])} pairs; ratio of the minima "
        f"{min(seconds[True]) / min(seconds[False]):.3f}x)"
    )
    assert ratio < LIMIT
