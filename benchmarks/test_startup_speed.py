"""Whole-process start-up of each command, and the runner's per-run overhead (issues 16 and 17).

Every command is timed as a fresh ``python -m sgdbench`` process, interleaved round by round
with the references ``python -c "import pandas"`` and ``python -c "import torch"`` so that both
sides see the same machine load; medians over the rounds (``SGDBENCH_BENCH_ROUNDS``, default 5).
CPU time is the child's user + system time, which load inflates far less than wall time. The
machine's ``uptime`` is printed with the figures.

    pytest benchmarks/test_startup_speed.py --benchmark-only -s

Targets: ``report`` on a 200-run folder within 0.5 s (CPU) of ``import pandas``; ``list
optimizers`` under 3 s; ``run --dry-run`` of a 2,000-run grid under 2 s, without torch; a one-run
grid of 10 steps within 1.3x the CPU of ``import torch``; the runner's overhead per run (whole
process time of a grid of N short runs, less one run's, less the runs' training clock) under
10 ms. Goals met by a wide margin are asserted, as ratios to the references of the same rounds
or with slack, so that a loaded machine does not fail them; the others are recorded.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
ROUNDS = int(os.environ.get("SGDBENCH_BENCH_ROUNDS", 5))
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

ONE_RUN = """
name = "one_run"
[problem]
name = "linear"
n_samples = 100
n_features = 5
[train]
steps = 10
eval_every = 0
[grid]
optimizer = "sgd"
lr = [0.01]
batch_size = [10]
seed = [{seeds}]
"""


def _process(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(cpu_s, wall_s) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def _sgdbench(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "sgdbench", *map(str, args)]


def interleaved(cases: dict[str, list[str]], cwd: Path, rounds: int = ROUNDS) -> pd.DataFrame:
    """Median cpu_s and wall_s per case, the cases run in turn each round."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, argv in cases.items():
            samples[name].append(_process(argv, cwd))
    return pd.DataFrame(
        {
            name: {
                "cpu_s": statistics.median(c for c, _ in s),
                "wall_s": statistics.median(w for _, w in s),
            }
            for name, s in samples.items()
        }
    ).T


def _uptime() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 200-run results folder (runs of 10 steps), and the grid files."""
    root = tmp_path_factory.mktemp("startup")
    (root / "one.toml").write_text(ONE_RUN.format(seeds="0"))
    (root / "many.toml").write_text(ONE_RUN.format(seeds=", ".join(map(str, range(200)))))
    (root / "g2000.toml").write_text(ONE_RUN.format(seeds=", ".join(map(str, range(2000)))))
    subprocess.run(
        _sgdbench("run", "many.toml", "--out", "r200", "-q"), cwd=root, env=ENV, check=True
    )
    yield root


@pytest.mark.timeout(3600)  # whole processes on a loaded machine: minutes, not seconds
def test_command_startup(folder: Path, benchmark) -> None:
    cases = {
        "import pandas": [sys.executable, "-c", "import pandas"],
        "import torch": [sys.executable, "-c", "import torch"],
        "report (200 runs)": _sgdbench("report", "r200"),
        "list optimizers": _sgdbench("list", "optimizers"),
        "list problems": _sgdbench("list", "problems"),
        "run --dry-run (200 runs)": _sgdbench("run", "many.toml", "--dry-run"),
        "run --dry-run (2,000 runs)": _sgdbench("run", "g2000.toml", "--dry-run"),
        "run, one 10-step run": _sgdbench("run", "one.toml", "--out", "r1", "--force", "-q"),
    }
    table = benchmark.pedantic(interleaved, args=(cases, folder), rounds=1, iterations=1)
    print(f"\nload average {_uptime()}, medians of {ROUNDS} interleaved rounds\n{table}")
    benchmark.extra_info.update({k: v.to_dict() for k, v in table.iterrows()})
    cpu = table["cpu_s"]
    # Issue 16/17's goals, recorded rather than asserted while some are still open (the README
    # gives the latest figures); those met by a wide margin gate.
    goals = {
        "dry-run of 2,000 runs under 2 s CPU": cpu["run --dry-run (2,000 runs)"] < 2.0,
        "report within 0.5 s CPU of import pandas": cpu["report (200 runs)"] - cpu["import pandas"]
        < 0.5,
        "one 10-step run within 1.3x the CPU of import torch": cpu["run, one 10-step run"]
        < 1.3 * cpu["import torch"],
    }
    benchmark.extra_info["goals_met"] = goals
    print("\n".join(f"goal {'met' if ok else 'MISSED'}: {name}" for name, ok in goals.items()))
    assert cpu["list optimizers"] < 3.0
    # About 1.4 s on a loaded 2-core machine, 0.6x `import torch` (2.5x when it built every
    # problem with torch): above 1x means torch is imported again, whatever the machine's speed.
    assert cpu["run --dry-run (2,000 runs)"] < cpu["import torch"]


@pytest.mark.timeout(3600)
def test_per_run_overhead(folder: Path, benchmark) -> None:
    """Whole-process time of 200 runs of 10 steps, less one run's, less their training clock."""
    cases = {
        "one run": _sgdbench("run", "one.toml", "--out", "o1", "--force", "-q"),
        "200 runs": _sgdbench("run", "many.toml", "--out", "o200", "--force", "-q"),
    }
    table = benchmark.pedantic(interleaved, args=(cases, folder, 3), rounds=1, iterations=1)
    train_s = pd.read_parquet(folder / "o200" / "runs.parquet")["train_time_s"].sum()
    per_run_cpu_ms = (
        table.loc["200 runs", "cpu_s"] - table.loc["one run", "cpu_s"] - train_s
    ) / 199
    per_run_wall_ms = (
        table.loc["200 runs", "wall_s"] - table.loc["one run", "wall_s"] - train_s
    ) / 199
    per_run_cpu_ms, per_run_wall_ms = per_run_cpu_ms * 1e3, per_run_wall_ms * 1e3
    print(
        f"\nload average {_uptime()}\n{table}\ntraining clock of the 200 runs {train_s:.2f} s; "
        f"overhead per run {per_run_cpu_ms:.1f} ms CPU, {per_run_wall_ms:.1f} ms wall"
    )
    benchmark.extra_info.update(per_run_cpu_ms=per_run_cpu_ms, per_run_wall_ms=per_run_wall_ms)
    # The goal (issue 16) is under 10 ms: 4-7 ms measured at load 5 on 2 cores. The assertion
    # leaves 1.5x slack, as load inflates it.
    print(f"goal {'met' if per_run_cpu_ms < 10.0 else 'MISSED'}: per-run overhead under 10 ms CPU")
    assert per_run_cpu_ms < 15.0
