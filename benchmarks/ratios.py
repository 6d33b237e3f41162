"""Whole-epoch throughput of sgdbench's engine against plain loops, hyperfine style.

    python -m benchmarks.ratios                 # table on stdout
    python -m benchmarks.ratios --markdown      # a markdown table for the README
    python -m benchmarks.ratios --runs 10 --timer wall

Each case trains the same problem, optimizer and data with four loops (see
``benchmarks/workloads.py``), interleaved round-robin so that a noisy neighbour slows all of them
alike. Timed: the whole call, for every loop: building the problem and optimizer, a full-data
evaluation before and after, the training steps, and for the engine all its bookkeeping (every
step's loss and time recorded, windows, checks, the Trajectory). Ratios are throughput ratios:
"engine ÷ X" is time(X) / time(engine), so > 1 means the engine is faster.

``--timer cpu`` (default) measures this process's CPU time (one intra-op thread, so it is the
work itself); on a shared machine wall time mostly measures the neighbours. Use ``--timer wall``
on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks import workloads

LOOPS = {
    "engine": "sgdbench engine",
    "hand_written": "hand-written (b)",
    "idiomatic": "idiomatic (b')",
    "tutorial": "tutorial (a)",
}
# (model, batch size, samples, epochs, goal for engine ÷ tutorial): 2000 or 1000 steps a run
CASES = [
    ("linear1", 1, 2000, 1, 1.2),
    ("mlp4k", 1, 2000, 1, 1.2),
    ("linear1", 100, 20_000, 5, 3.0),
    ("mlp4k", 100, 20_000, 5, 3.0),
]
OPTIMIZER = "momentum"
HAND_WRITTEN_GOAL = 0.95


@dataclass
class Timing:
    times_s: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times_s)

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.times_s) if len(self.times_s) > 1 else 0.0


def ratio(base: Timing, new: Timing) -> tuple[float, float]:
    """time(base) / time(new) and its standard deviation (first-order error propagation)."""
    r = base.mean / new.mean
    rel = ((base.stdev / base.mean) ** 2 + (new.stdev / new.mean) ** 2) ** 0.5
    return r, r * rel


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:8.1f} ms" if seconds < 10 else f"{seconds:8.3f} s"


def measure_case(
    folder: Path,
    model: str,
    batch_size: int,
    n_samples: int,
    epochs: int,
    runs: int,
    clock: Callable[[], float],
) -> dict[str, Timing]:
    spec = workloads.load_spec(
        workloads.write_grid(folder, model, OPTIMIZER, batch_size, n_samples, epochs=epochs)
    )
    cpu = torch.device("cpu")
    calls: dict[str, Callable[[], object]] = {
        "engine": lambda: workloads.engine_epoch(spec),
        "hand_written": lambda: workloads.hand_written_epoch(spec, cpu),
        "idiomatic": lambda: workloads.idiomatic_epoch(spec, cpu),
        "tutorial": lambda: workloads.tutorial_epoch(spec, cpu),
    }
    for call in calls.values():  # warm-up: imports, allocator, first-call paths
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            t0 = clock()
            call()
            times[name].append(clock() - t0)
    return {name: Timing(t) for name, t in times.items()}


def print_case(title: str, results: dict[str, Timing], goal: float, out=sys.stdout) -> None:
    print(f"\n{title}", file=out)
    for name, label in LOOPS.items():
        t = results[name]
        print(
            f"  {label:18s} Time (mean ± σ): {fmt_time(t.mean)} ± {fmt_time(t.stdev).strip():>9s}"
            f"    Range (min … max): {fmt_time(min(t.times_s))} … "
            f"{fmt_time(max(t.times_s)).strip()}    {len(t.times_s)} runs",
            file=out,
        )
    engine = results["engine"]
    vs_tutorial = ratio(results["tutorial"], engine)
    vs_hand = ratio(results["hand_written"], engine)
    vs_idiomatic = ratio(results["idiomatic"], engine)
    print(
        f"  engine is {vs_tutorial[0]:.2f} ± {vs_tutorial[1]:.2f}× faster than the tutorial loop"
        f" (goal ≥ {goal:g})",
        file=out,
    )
    print(
        f"  engine runs at {vs_hand[0]:.2f} ± {vs_hand[1]:.2f}× of the hand-written loop"
        f" (goal ≥ {HAND_WRITTEN_GOAL}), {vs_idiomatic[0]:.2f} ± {vs_idiomatic[1]:.2f}× of the"
        " idiomatic loop",
        file=out,
    )


def markdown(rows: list[tuple[str, int, int, float, dict[str, Timing]]]) -> str:
    lines = [
        "| model | batch | steps | engine | hand-written (b) | idiomatic (b') | tutorial (a) "
        "| engine ÷ (b) | engine ÷ (a) | goals |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for model, batch_size, steps, goal, r in rows:
        cell = {k: f"{r[k].mean * 1e3:.0f} ± {r[k].stdev * 1e3:.0f} ms" for k in LOOPS}
        vs_hand, vs_tut = ratio(r["hand_written"], r["engine"]), ratio(r["tutorial"], r["engine"])
        met = vs_hand[0] >= HAND_WRITTEN_GOAL and vs_tut[0] >= goal
        goals = f"≥ {HAND_WRITTEN_GOAL} / ≥ {goal:g}: {'met' if met else 'missed'}"
        lines.append(
            f"| {model} ({workloads.MODELS[model].n_parameters:,} params) | {batch_size} | {steps}"
            f" | {cell['engine']} | {cell['hand_written']} | {cell['idiomatic']}"
            f" | {cell['tutorial']} | {vs_hand[0]:.2f} ± {vs_hand[1]:.2f}"
            f" | {vs_tut[0]:.2f} ± {vs_tut[1]:.2f} | {goals} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per loop (default 5)")
    parser.add_argument("--timer", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table")
    parser.add_argument("--quick", action="store_true", help="batch size 1 cases only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the engine's specs say threads = 1 too
    clock = time.process_time if args.timer == "cpu" else time.perf_counter
    print(
        f"torch {torch.__version__}, 1 thread, {args.timer} time, optimizer SGD+momentum "
        f"(lr 0.01, momentum 0.9), setup and 2 evaluations included",
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, batch_size, n_samples, epochs, goal in CASES:
            if args.quick and batch_size != 1:
                continue
            steps = epochs * -(-n_samples // batch_size)
            results = measure_case(
                Path(tmp), model, batch_size, n_samples, epochs, args.runs, clock
            )
            n_params = workloads.MODELS[model].n_parameters
            title = f"{model} ({n_params:,} parameters), batch size {batch_size}, {steps} steps"
            print_case(title, results, goal)
            rows.append((model, batch_size, steps, goal, results))
    if args.markdown:
        print("\n" + markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
