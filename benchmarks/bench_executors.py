"""Whole-grid speed of the executors: serial, ``--jobs N`` and a Dask LocalCluster of N workers.

    python -m benchmarks.bench_executors [--runs 24] [--steps 4000] [--jobs 2] [--baseline DIR]

Each executor runs the same CPU grid end to end (``python -m sgdbench run``, so interpreter,
worker and cluster start-up count) and the script prints wall time and speed-up over serial.
Then the cost of the machinery itself: the same executors on grids of tiny runs (a few steps),
``startup`` being the wall time of a 4-run grid and ``per run`` the wall time each further run
adds, ((wall of N+4 runs) - (wall of 4 runs)) / N.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=24, help="runs in the grid (multiple of 4)")
    parser.add_argument("--steps", type=int, default=4000, help="steps per run (~1 s on CPU)")
    parser.add_argument("--jobs", type=int, default=2, help="workers for process and dask")
    parser.add_argument("--tiny-runs", type=int, default=48, help="runs in the overhead grid")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (the fastest counts)")
    parser.add_argument("--skip-overhead", action="store_true", help="only the main grid")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout: its --jobs and dask in the same rounds"
    )
    parser.add_argument(
        "--default-threads",
        action="store_true",
        help="also time serial with torch's default intra-op threads (all cores)",
    )
    args = parser.parse_args()

    # (sgdbench options, environment). The reference is serial with one intra-op thread, as
    # each worker of the parallel executors has on 2 cores.
    one_thread = {"OMP_NUM_THREADS": "1"}
    executors: dict[str, tuple[list[str], dict[str, str]]] = {
        "serial, 1 thread": ([], one_thread),
        f"--jobs {args.jobs}": (["--jobs", str(args.jobs)], {}),
        f"dask LocalCluster({args.jobs})": (["--executor", "dask", "--jobs", str(args.jobs)], {}),
    }
    if args.baseline:
        base = {"PYTHONPATH": str(args.baseline.resolve())}
        executors[f"baseline --jobs {args.jobs}"] = (["--jobs", str(args.jobs)], base)
        executors[f"baseline dask({args.jobs})"] = (
            ["--executor", "dask", "--jobs", str(args.jobs)],
            base,
        )
    if args.default_threads:
        executors[f"serial, {os.cpu_count()} threads"] = ([], {})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} before the benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        grid = write_grid(folder, "bench", args.runs, args.steps)
        # Rounds interleave the executors so that a burst of load from elsewhere hits all.
        walls: dict[str, list[float]] = {name: [] for name in executors}
        cpus: dict[str, list[float]] = {name: [] for name in executors}
        train: dict[str, list[float]] = {name: [] for name in executors}
        for r in range(args.repeat):
            for i, (name, (extra, env)) in enumerate(executors.items()):
                out = folder / f"out{r}-{i}"
                wall, cpu = run_grid_cpu(grid, out, extra, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
                train[name].append(train_seconds(out) / args.runs)
        print(f"\n{args.runs} runs x {args.steps} steps (linear, 32 features, batch 16), ", end="")
        print(f"{args.repeat} round(s); speed-up of the fastest rounds")
        header = f"{'executor':<26} {'min wall s':>10} {'mean ± sd':>14} {'speed-up':>9}"
        print(f"{header} {'train s/run':>12} {'median CPU s':>12}")
        reference = min(walls["serial, 1 thread"])
        for name in executors:
            w = walls[name]
            sd = statistics.stdev(w) if len(w) > 1 else 0.0
            spread = f"{statistics.mean(w):.1f} ± {sd:.1f}"
            print(
                f"{name:<26} {min(w):10.2f} {spread:>14} {reference / min(w):8.2f}x "
                f"{min(train[name]):12.3f} {statistics.median(cpus[name]):12.2f}"
            )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"load average {load:.1f} after the main grid")
        if args.skip_overhead:
            return
        small = write_grid(folder, "small", 4, 10)
        tiny = write_grid(folder, "tiny", args.tiny_runs + 4, 10)
        n = args.tiny_runs
        print(f"\noverhead, runs of 10 steps: per run = (wall of {n + 4} - wall of 4) / {n}")
        print(f"{'executor':<26} {'startup s':>10} {'per run ms':>11}")
        for i, (name, (extra, env)) in enumerate(executors.items()):
            if ("threads" in name or "baseline" in name) and i:
                continue  # the thread count does not change the machinery's cost
            base = min(run_grid(small, folder / f"small{i}-{r}", extra, env) for r in range(2))
            wall = min(run_grid(tiny, folder / f"tiny{i}-{r}", extra, env) for r in range(2))
            print(f"{name:<26} {base:10.2f} {1000 * (wall - base) / n:11.1f}")


if __name__ == "__main__":
    main()
