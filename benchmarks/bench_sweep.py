"""Whole-process speed of a 64-lr sweep: ``sgdbench run --engine stacked`` vs ``--engine eager``.

    python -m benchmarks.bench_sweep [--rounds 5] [--case linear --case mlp] [--baseline DIR]

Each case is a grid of 64 learning rates (log-spaced 1e-4 .. 1e-1), batch 32, 500 steps, no
``eval_every`` (each engine's default evaluation frequency): ``linear`` is linear regression
(1000 x 10), ``mlp`` the digits MLP (hidden 64). Every round runs eager then stacked, each as
``python -m sgdbench run`` in a fresh interpreter (imports, planning, training, writing the
results and the closing summary all count), so a burst of load from elsewhere hits both.
Printed per case: the median wall and CPU seconds (the process and its children) and the
eager/stacked ratios, each the median of the rounds' paired ratios with a bootstrap 95%
interval (``benchmarks.intervals``), with the load averages; on a shared machine the CPU ratio
is the one to trust. ``--baseline DIR``: also time both sweeps of another checkout (``git
archive REV | tar -x -C DIR``) in the same rounds, for before/after.

Not a pytest-benchmark: one eager sweep takes tens of seconds and the point is the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.bench_executors import run_grid_cpu
from benchmarks.intervals import loadavg, paired_ratio, show

PROBLEMS = {
    "linear": 'name = "linear"\nn_samples = 1000\nn_features = 10',
    "mlp": 'name = "digits"\nmodel = "mlp"\nhidden = [64]',
}
GRID = """name = "{name}"
[problem]
{problem}
[train]
steps = {steps}
[grid]
lr = {{logspace = [1e-4, 1e-1], num = {members}}}
batch_size = [32]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=sorted(PROBLEMS))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved eager/stacked pairs")
    parser.add_argument("--members", type=int, default=64, help="learning rates in the sweep")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--baseline", type=Path, help="another checkout: its stacked sweep too")
    args = parser.parse_args()
    one_thread = {"OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for case in args.case or sorted(PROBLEMS):
            grid = folder / f"{case}.toml"
            grid.write_text(
                GRID.format(
                    name=case, problem=PROBLEMS[case], steps=args.steps, members=args.members
                )
            )
            runs = {"eager": ("eager", {}), "stacked": ("stacked", {})}
            if args.baseline:
                base = {"PYTHONPATH": str(args.baseline.resolve())}
                runs |= {"baseline eager": ("eager", base), "baseline stacked": ("stacked", base)}
            walls: dict[str, list[float]] = {name: [] for name in runs}
            cpus: dict[str, list[float]] = {name: [] for name in runs}
            loads = [loadavg()]
            for r in range(args.rounds):
                for i, (name, (engine, env)) in enumerate(runs.items()):
                    out = folder / f"{case}-{i}-{r}"
                    extra = ["--engine", engine]
                    wall, cpu = run_grid_cpu(grid, out, extra, {**one_thread, **env})
                    walls[name].append(wall)
                    cpus[name].append(cpu)
                loads.append(loadavg())
            wall = {e: statistics.median(w) for e, w in walls.items()}
            cpu = {e: statistics.median(c) for e, c in cpus.items()}
            print(
                f"{case}: {args.members} lrs x {args.steps} steps, median of {args.rounds}, "
                f"load average {loads[0]} -> {loads[-1]}"
            )
            for prefix in ("", "baseline ") if args.baseline else ("",):
                e, s = prefix + "eager", prefix + "stacked"
                print(
                    f"  {prefix or 'now: '}eager {wall[e]:.1f} s wall / {cpu[e]:.1f} s CPU, "
                    f"stacked {wall[s]:.1f} s wall / {cpu[s]:.1f} s CPU; stacked faster: "
                    f"{show(paired_ratio(walls[e], walls[s]))} (wall), "
                    f"{show(paired_ratio(cpus[e], cpus[s]))} (CPU)"
                )
            if args.baseline:
                print(
                    "  now vs baseline (CPU): "
                    f"eager {show(paired_ratio(cpus['baseline eager'], cpus['eager']))} less, "
                    f"stacked {show(paired_ratio(cpus['baseline stacked'], cpus['stacked']))} less"
                )


if __name__ == "__main__":
    main()
