"""Whole-epoch throughput: sgdbench's engine against the plain loops, in one session.

Timed: the whole call for every loop (build, evaluate, train, evaluate; see
``workloads.py``). ``python -m benchmarks.ratios`` prints the ratios of the same workloads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks import workloads
from benchmarks.ratios import CASES, OPTIMIZER

LOOPS = ("engine", "hand_written", "idiomatic", "tutorial")


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("grids")


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize(
    ("model", "batch_size", "n_samples", "epochs"),
    [case[:4] for case in CASES],
    ids=[f"{c[0]}-bs{c[1]}" for c in CASES],
)
def test_epoch(benchmark, rounds, grid_dir, loop, model, batch_size, n_samples, epochs):
    spec = workloads.load_spec(
        workloads.write_grid(grid_dir, model, OPTIMIZER, batch_size, n_samples, epochs=epochs)
    )
    cpu = torch.device("cpu")
    call = {
        "engine": lambda: workloads.engine_epoch(spec),
        "hand_written": lambda: workloads.hand_written_epoch(spec, cpu),
        "idiomatic": lambda: workloads.idiomatic_epoch(spec, cpu),
        "tutorial": lambda: workloads.tutorial_epoch(spec, cpu),
    }[loop]
    benchmark.group = f"epoch {model} bs={batch_size} ({spec.steps} steps)"
    benchmark.extra_info["steps"] = spec.steps
    call()  # warm-up
    benchmark.pedantic(call, rounds=rounds, iterations=1)
