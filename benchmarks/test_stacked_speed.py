"""Stacked engine vs eager engine: config-steps per second of a learning-rate sweep.

A *config-step* is one optimizer step of one run. The eager engine's rate is per run (runs are
independent, so it is measured on a few of the sweep's runs); the stacked engine's is the group's
(members x steps / group training time). Both use the training clock (evaluation excluded);
pytest-benchmark's own timing is the whole unit (build, evaluations, training).

    python -m pytest benchmarks/test_stacked_speed.py -s

The last test prints the speed-up table (ratios measured in this session).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sgdbench.engine import eager, execute_unit, plan
from sgdbench.plan import load_grid
from sgdbench.spec import RunSpec

STEPS = 300
EAGER_RUNS = 4  # eager runs timed per case (its rate does not depend on the sweep size)
MEMBERS = [8, 16, 64, 256]
CASES = {
    # Linear(1, 1) at batch size 1: pure overhead on the eager engine
    "linear-1x1-bs1": ('name = "linear"\nn_samples = 1000\nn_features = 1', 1),
    # digits MLP 64-56-10: 4,210 parameters, batch size 32
    "mlp-4k-bs32": ('name = "digits"\nmodel = "mlp"\nhidden = [56]', 32),
}
RESULTS: dict[tuple[str, str], float] = {}


def _specs(tmp_path: Path, case: str, members: int) -> list[RunSpec]:
    problem, batch_size = CASES[case]
    lrs = ", ".join(f"{lr:.6g}" for lr in np.logspace(-4, -1, members))
    grid = tmp_path / f"{case}-{members}.toml"
    grid.write_text(
        f'name = "bench"\n[problem]\n{problem}\n[train]\nsteps = {STEPS}\neval_every = 0\n'
        f"threads = 1\n[grid]\nlr = [{lrs}]\nbatch_size = {batch_size}\n"
    )
    return load_grid(grid, engine="stacked").runs


@pytest.mark.parametrize("case", CASES)
def test_eager_sweep(benchmark, tmp_path: Path, case: str) -> None:
    specs = [replace(s, engine="eager") for s in _specs(tmp_path, case, EAGER_RUNS)]

    def run() -> list:
        return [eager.run(s) for s in specs]

    trajs = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert all(t.status == "ok" for t in trajs)
    rate = sum(t.steps for t in trajs) / sum(t.train_time_s for t in trajs)
    RESULTS[(case, "eager")] = rate
    benchmark.extra_info["config_steps_per_s"] = rate


@pytest.mark.parametrize("members", MEMBERS)
@pytest.mark.parametrize("case", CASES)
def test_stacked_sweep(benchmark, tmp_path: Path, case: str, members: int) -> None:
    (unit,) = plan(_specs(tmp_path, case, members))

    def run() -> list:
        return execute_unit(unit)

    trajs = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert all(t.status in ("ok", "diverged") for t in trajs)
    rate = sum(t.steps for t in trajs) / trajs[0].info["group_train_time_s"]
    RESULTS[(case, f"stacked-{members}")] = rate
    benchmark.extra_info["config_steps_per_s"] = rate


def test_print_speedups() -> None:
    """The speed-up table of this session (run with -s to see it)."""
    if not RESULTS:
        pytest.skip("no benchmark ran")
    lines = ["| case | engine | config-steps/s | speed-up vs eager |", "|---|---|---:|---:|"]
    for (case, engine), rate in RESULTS.items():
        base = RESULTS.get((case, "eager"))
        ratio = f"{rate / base:.1f}x" if base else "n/a"
        lines.append(f"| {case} | {engine} | {rate:,.0f} | {ratio} |")
    print("\n" + "\n".join(lines))
