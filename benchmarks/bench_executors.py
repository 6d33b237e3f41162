"""Whole-grid speed of the executors: serial, ``--jobs N`` and a Dask LocalCluster of N workers.

    python -m benchmarks.bench_executors [--runs 24] [--steps 1000 --steps 4000] [--jobs 2]
        [--rounds 5] [--baseline DIR] [--section grid --section tiny --section startup]

``grid``: each executor runs the same CPU grid end to end (``python -m sgdbench run``, so
interpreter, worker and cluster start-up count), once per round, the executors interleaved so
that a burst of load from elsewhere hits all of them. Printed: median wall and CPU seconds (the
process and every child it waited for), each executor's speed-up over serial and Dask's over
``--jobs N`` as the median of the paired ratios with a bootstrap 95% interval over the rounds
(``benchmarks.intervals``), and the Amdahl bound of N workers: serial's wall splits into T, the
runs' training clock (which workers share out), and S, the rest (interpreter, imports,
planning, writing: the driver's alone), so N workers are at best (S + T) / (S + T / N) faster.
``tiny``: the same on a grid of 4 runs of 10 steps (too short to repay workers: they should run
in the driver and cost nothing). ``startup``: CPU of one 10-step run against ``python -c
"import torch"``. ``--baseline DIR``: another checkout's ``--jobs`` and Dask in the same rounds
(before/after). ``--per-run``: the machinery's cost per extra tiny run.

Not a pytest-benchmark: one grid takes tens of seconds and the point is the whole-grid ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.intervals import loadavg, paired_ratio, show

REPO = Path(__file__).resolve().parents[1]

GRID = """
name = "{name}"
[problem]
name = "linear"
n_samples = 4096
n_features = 32
[train]
steps = {steps}
eval_every = 0
[grid]
optimizer = ["sgd", "adam"]
lr = [0.001, 0.01]
batch_size = [16]
seed = {seeds}
"""


def write_grid(folder: Path, name: str, runs: int, steps: int) -> Path:
    if runs % 4:
        raise SystemExit(f"--runs must be a multiple of 4 (2 optimizers x 2 lrs), got {runs}")
    path = folder / f"{name}.toml"
    seeds = list(range(runs // 4))
    path.write_text(textwrap.dedent(GRID.format(name=name, steps=steps, seeds=seeds)))
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_grid_cpu(
    grid: Path, out: Path, extra: list[str], env_extra: dict[str, str]
) -> tuple[float, float]:
    """Wall and CPU seconds of ``sgdbench run GRID`` in a fresh interpreter (CPU: the driver and
    every process it waited for: workers, forkserver, Dask nannies)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **env_extra}
    command = [sys.executable, "-m", "sgdbench", "run", str(grid), "--out", str(out), "-q"]
    cpu, start = _children_cpu(), time.perf_counter()
    # Not in the repository: `python -m` would import the sgdbench of the working directory.
    done = subprocess.run(
        [*command, *extra], env=env, capture_output=True, text=True, cwd=out.parent
    )
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command + extra)} failed:\n{done.stderr}")
    return wall, cpu


def run_grid(grid: Path, out: Path, extra: list[str], env_extra: dict[str, str]) -> float:
    """Wall seconds of ``sgdbench run GRID`` in a fresh interpreter."""
    return run_grid_cpu(grid, out, extra, env_extra)[0]


def train_seconds(out: Path) -> float:
    import pandas as pd

    return float(pd.read_parquet(out / "runs.parquet")["train_time_s"].sum())


Executors = dict[str, tuple[list[str], dict[str, str]]]
SERIAL = "serial, 1 thread"


def executors_of(args: argparse.Namespace) -> Executors:
    """(sgdbench options, environment) by name. The reference is serial with one intra-op
    thread, as each worker of the parallel executors has on 2 cores."""
    jobs = ["--jobs", str(args.jobs)]
    dask = ["--executor", "dask", *jobs]
    executors: Executors = {
        SERIAL: ([], {"OMP_NUM_THREADS": "1"}),
        f"--jobs {args.jobs}": (jobs, {}),
    }
    if not args.no_dask:
        executors[f"dask LocalCluster({args.jobs})"] = (dask, {})
    if args.forced:  # workers started whatever the grid's length
        executors[f"--jobs {args.jobs} --always-parallel"] = ([*jobs, "--always-parallel"], {})
        if not args.no_dask:
            executors["dask --always-parallel"] = ([*dask, "--always-parallel"], {})
    if args.baseline:
        base = {"PYTHONPATH": str(args.baseline.resolve())}
        executors[f"baseline --jobs {args.jobs}"] = (jobs, base)
        if not args.no_dask:
            executors[f"baseline dask({args.jobs})"] = (dask, base)
    if args.default_threads:
        executors[f"serial, {os.cpu_count()} threads"] = ([], {})
    return executors


def compare(folder: Path, grid: Path, executors: Executors, rounds: int, title: str) -> None:
    """Interleaved rounds of every executor on ``grid``; medians, paired ratios, Amdahl."""
    walls: dict[str, list[float]] = {name: [] for name in executors}
    cpus: dict[str, list[float]] = {name: [] for name in executors}
    train: list[float] = []
    loads = [loadavg()]
    for r in range(rounds):
        for i, (name, (extra, env)) in enumerate(executors.items()):
            out = folder / f"{grid.stem}-{r}-{i}"
            wall, cpu = run_grid_cpu(grid, out, extra, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
            if name == SERIAL:
                train.append(train_seconds(out))
        loads.append(loadavg())
    print(f"\n{title}, {rounds} interleaved rounds; load average {loads[0]} -> {loads[-1]}")
    print(
        f"{'executor':<26} {'median wall s':>13} {'median CPU s':>12} "
        f"{'speed-up over serial (95% CI)':>30} {'CPU vs serial':>22}"
    )
    for name in executors:
        speed = paired_ratio(walls[SERIAL], walls[name])
        cpu = paired_ratio(cpus[name], cpus[SERIAL])
        print(
            f"{name:<26} {statistics.median(walls[name]):13.2f} "
            f"{statistics.median(cpus[name]):12.2f} {show(speed):>30} {show(cpu):>22}"
        )
    jobs = next(n for n in executors if n.startswith("--jobs"))
    for dask in [n for n in executors if "dask" in n]:
        ref = f"baseline {jobs}" if dask.startswith("baseline") else jobs
        if "always" in dask:
            ref = f"{jobs} --always-parallel"
        print(f"{dask} wall / {ref} wall: {show(paired_ratio(walls[dask], walls[ref]))}")
    t = statistics.median(train)
    s = statistics.median(w - tr for w, tr in zip(walls[SERIAL], train, strict=True))
    n = int(jobs.split()[1])
    print(
        f"serial: S = {s:.2f} s outside training, T = {t:.2f} s training clock: "
        f"{n} workers at best (S + T) / (S + T/{n}) = {(s + t) / (s + t / n):.2f}x"
    )


def startup(folder: Path, rounds: int) -> None:
    """CPU (user + sys) of a one-run grid of 10 steps against ``python -c "import torch"``."""
    grid = folder / "one.toml"
    one = GRID.format(name="one", steps=10, seeds=[0])
    one = one.replace('["sgd", "adam"]', '"sgd"').replace("[0.001, 0.01]", "[0.01]")
    grid.write_text(one)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs: list[float] = []
    imports: list[float] = []
    loads = [loadavg()]
    for r in range(rounds):
        before = _children_cpu()
        subprocess.run([sys.executable, "-c", "import torch"], env=env, check=True)
        imports.append(_children_cpu() - before)
        runs.append(run_grid_cpu(grid, folder / f"one-{r}", [], {"OMP_NUM_THREADS": "1"})[1])
        loads.append(loadavg())
    print(f"\none 10-step run vs python -c 'import torch', {rounds} interleaved pairs; ", end="")
    print(f"load average {loads[0]} -> {loads[-1]}")
    print(
        f"CPU s: run {statistics.median(runs):.2f}, import torch {statistics.median(imports):.2f};"
        f" run / import torch = {show(paired_ratio(runs, imports))}"
    )


def per_run(folder: Path, executors: Executors, tiny_runs: int) -> None:
    """The machinery's cost of each further short run: (wall of N+4 runs - wall of 4) / N."""
    small = write_grid(folder, "small", 4, 10)
    tiny = write_grid(folder, "tiny", tiny_runs + 4, 10)
    print(
        f"\noverhead, runs of 10 steps: per run = (wall of {tiny_runs + 4} - wall of 4) / ", end=""
    )
    print(f"{tiny_runs}")
    print(f"{'executor':<26} {'4 runs s':>10} {'per run ms':>11}")
    for i, (name, (extra, env)) in enumerate(executors.items()):
        if "threads" in name and i:
            continue  # the thread count does not change the machinery's cost
        base = min(run_grid(small, folder / f"small{i}-{r}", extra, env) for r in range(2))
        wall = min(run_grid(tiny, folder / f"tiny{i}-{r}", extra, env) for r in range(2))
        print(f"{name:<26} {base:10.2f} {1000 * (wall - base) / tiny_runs:11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=24, help="runs in the grid (multiple of 4)")
    parser.add_argument(
        "--steps", type=int, action="append", help="steps per run (repeatable) [4000]"
    )
    parser.add_argument("--jobs", type=int, default=2, help="workers for process and dask")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument(
        "--section", action="append", choices=["grid", "tiny", "startup"], help="[all three]"
    )
    parser.add_argument("--no-dask", action="store_true", help="leave Dask out")
    parser.add_argument(
        "--forced", action="store_true", help="also --jobs and Dask with --always-parallel"
    )
    parser.add_argument("--per-run", type=int, default=0, help="also: overhead per tiny run")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout: its --jobs and dask in the same rounds"
    )
    parser.add_argument(
        "--default-threads",
        action="store_true",
        help="also time serial with torch's default intra-op threads (all cores)",
    )
    args = parser.parse_args()
    executors = executors_of(args)
    sections = args.section or ["grid", "tiny", "startup"]
    print(f"{os.cpu_count()} CPUs, load average {loadavg()} before the benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "grid" in sections:
            for steps in args.steps or [4000]:
                grid = write_grid(folder, f"bench{steps}", args.runs, steps)
                title = f"{args.runs} runs x {steps} steps (linear, 32 features, batch 16)"
                compare(folder, grid, executors, args.rounds, title)
        if "tiny" in sections:
            grid = write_grid(folder, "four", 4, 10)
            compare(folder, grid, executors, args.rounds, "4 runs x 10 steps")
        if "startup" in sections:
            startup(folder, args.rounds)
        if args.per_run:
            per_run(folder, executors, args.per_run)


if __name__ == "__main__":
    main()
