"""Benchmark gate for CI: fails when sgdbench's engine falls behind the plain training loops.

    python -m benchmarks.gate              # make bench-gate: exit 0, or 1 with a line per failure
    python -m benchmarks.gate --rounds 12  # tighter intervals, longer

CI has no saved baseline on a fresh machine, so the gate measures its own, in the same process:
the engine against the hand-written loop (b) and the tutorial loop (a) of ``workloads.py``, on
two of the cases of ``ratios.py``. What keeps a loaded machine from tripping it:

- one intra-op thread and CPU time of the process (``time.process_time``): neighbours do not
  bill us for their work;
- interleaved rounds, each timing every loop once, in an order rotated from round to round: a
  load change slows the engine and the loop it is compared with alike;
- the statistic is the per-round ratio time(loop) / time(engine), paired within the round; its
  median gets a 95% bootstrap interval (``scipy.stats.bootstrap``, percentile method);
- a ratio fails only when the whole interval lies below its threshold.

Thresholds sit between today's ratios and today's ratios ÷ 1.5, so a 1.5× slower engine fails
(``SGDBENCH_BENCH_SLOWDOWN=1.5`` injects one; docs/performance.md gives the measured rates).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

LOOP_LABELS = {
    "engine": "sgdbench engine",
    "hand_written": "hand-written (b)",
    "tutorial": "tutorial (a)",
}


@dataclass(frozen=True)
class GateCase:
    """One workload and the least ratio (time(loop) / time(engine)) allowed against each loop."""

    model: str
    batch_size: int
    n_samples: int
    epochs: int
    min_ratio: dict[str, float]

    @property
    def name(self) -> str:
        return f"{self.model} bs={self.batch_size}"


# Two of ratios.py's cases, shortened so that the gate stays under 2 minutes on a loaded 2-core
# machine: pure per-step overhead (Linear(1, 1), batch 1) and a model doing real work (4k MLP,
# batch 100). Today engine ÷ (b) is about 0.97 and engine ÷ (a) about 1.3 and 2.0; a 1.5× slower
# engine gives about 0.65, 0.9 and 1.35: the thresholds sit between.
GATE_CASES = [
    GateCase("linear1", 1, 500, 1, {"hand_written": 0.85, "tutorial": 1.1}),
    GateCase("mlp4k", 100, 20_000, 1, {"hand_written": 0.85, "tutorial": 1.6}),
]
CONFIDENCE = 0.95


@dataclass(frozen=True)
class RatioResult:
    """time(loop) / time(engine): the median of the per-round ratios and its interval."""

    case: str
    loop: str
    median: float
    low: float
    high: float
    threshold: float

    @property
    def failed(self) -> bool:
        # only when the whole interval is below: noise that widens it cannot fail the gate
        return self.high < self.threshold

    def failure_line(self) -> str:
        return (
            f"bench-gate: {self.case}: engine ÷ {LOOP_LABELS[self.loop]} {self.median:.2f} "
            f"[{self.low:.2f}, {self.high:.2f}] is below {self.threshold:g}"
        )


def ratio_interval(
    loop_times_s: Sequence[float], engine_times_s: Sequence[float], seed: int = 0
) -> tuple[float, float, float]:
    """Median of the per-round ratios loop / engine and its bootstrap interval (low, high).

    The two sequences are paired by round: element i of each was measured in round i.
    """
    if len(loop_times_s) != len(engine_times_s) or len(loop_times_s) < 2:
        raise ValueError("need two or more rounds, paired")
    ratios = np.asarray(loop_times_s, dtype=float) / np.asarray(engine_times_s, dtype=float)
    if np.ptp(ratios) == 0:  # every round agrees: nothing to resample
        return float(ratios[0]), float(ratios[0]), float(ratios[0])
    result = stats.bootstrap(
        (ratios,),
        np.median,
        confidence_level=CONFIDENCE,
        method="percentile",
        n_resamples=2000,
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return float(np.median(ratios)), float(ci.low), float(ci.high)


def judge(case: GateCase, times_s: dict[str, list[float]]) -> list[RatioResult]:
    """The gate's verdict on one case from its per-round timings (loop name -> seconds)."""
    results = []
    for loop, threshold in case.min_ratio.items():
        median, low, high = ratio_interval(times_s[loop], times_s["engine"])
        results.append(RatioResult(case.name, loop, median, low, high, threshold))
    return results


def measure(case: GateCase, rounds: int, folder: Path) -> dict[str, list[float]]:
    """CPU seconds of each loop's whole call, ``rounds`` interleaved rounds after a warm-up."""
    import torch

    from benchmarks import workloads
    from benchmarks.ratios import OPTIMIZER

    spec = workloads.load_spec(
        workloads.write_grid(
            folder, case.model, OPTIMIZER, case.batch_size, case.n_samples, epochs=case.epochs
        )
    )
    cpu = torch.device("cpu")
    calls: dict[str, Callable[[], object]] = {
        "engine": lambda: workloads.engine_epoch(spec),
        "hand_written": lambda: workloads.hand_written_epoch(spec, cpu),
        "tutorial": lambda: workloads.tutorial_epoch(spec, cpu),
    }
    for call in calls.values():  # warm-up: imports, allocator, first-call paths
        call()
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        # rotate the order so that no loop always runs first (or right after the same one)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.process_time()
            calls[name]()
            times[name].append(time.process_time() - t0)
    return times


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def table(case: GateCase, times_s: dict[str, list[float]], results: list[RatioResult]) -> str:
    """hyperfine-style lines for one case: each loop's time, then each gated ratio."""
    lines = [f"{case.name} ({case.n_samples * case.epochs // case.batch_size} steps)"]
    for loop, label in LOOP_LABELS.items():
        t = np.asarray(times_s[loop])
        lines.append(
            f"  {label:17s} Time (median ± σ): {fmt_ms(float(np.median(t))):>9s} ± "
            f"{fmt_ms(float(t.std(ddof=1))):>8s}    Range (min … max): "
            f"{fmt_ms(float(t.min())):>9s} … {fmt_ms(float(t.max())):>9s}    {len(t)} rounds"
        )
    for r in results:
        verdict = "FAIL" if r.failed else "ok"
        lines.append(
            f"  engine ÷ {LOOP_LABELS[r.loop]:17s} {r.median:5.2f}  "
            f"{CONFIDENCE:.0%} interval [{r.low:.2f}, {r.high:.2f}]  threshold {r.threshold:g}"
            f"  {verdict}"
        )
    return "\n".join(lines)


def main(
    argv: list[str] | None = None,
    measure_case: Callable[[GateCase, int, Path], dict[str, list[float]]] = measure,
) -> int:
    """Run the gate; 0 when every ratio passes, 1 when one fails, 2 on bad options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        print(f"bench-gate: --rounds: must be >= 3, got {args.rounds}", file=sys.stderr)
        return 2
    try:
        from benchmarks import slowdown

        factor = slowdown.factor_from_env()
    except ValueError as exc:
        print(f"bench-gate: {exc}", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(1)  # the engine's specs say threads = 1 too
    note = f", engine slowed {factor:g}× ({slowdown.ENV})" if factor > 1 else ""
    print(f"torch {torch.__version__}, 1 thread, CPU time, {args.rounds} rounds{note}")
    failures: list[RatioResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in GATE_CASES:
            times_s = measure_case(case, args.rounds, Path(tmp))
            results = judge(case, times_s)
            print(table(case, times_s, results), flush=True)
            failures += [r for r in results if r.failed]
    for r in failures:
        print(r.failure_line(), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
