"""False-alarm and catch rates of ``sgdbench compare`` on timings (issue 13's target).

Each trial runs one small grid three times into three folders: ``base`` and ``same`` on the
unchanged step, ``slow`` with a step that does half again as much work
(``SGDBENCH_BENCH_SLOWDOWN=1.5``, ``benchmarks/slowdown.py``: identical losses, 1.5x the work).
Then ``sgdbench compare base same`` should exit 0 (no regression: a false alarm otherwise) and
``sgdbench compare base slow`` should exit 1 (the slowdown caught). The three runs of a trial go
in a rotating order so that neither comparison always sees the same neighbour in time.

    python -m benchmarks.compare_trials --trials 20 [--repeat N] [--keep DIR] [-- OPTIONS...]

``--repeat`` (default 3) is the grid's ``[train] repeat``: with 2 seeds, 6 timed runs a side
(docs/performance.md has the counts at 1 and 3). ``--keep DIR`` keeps the folders; run again
with the same DIR (and trials) to compare them again without rerunning (finished runs are
skipped), e.g. with other compare options.

Prints one line per trial (the steps/s changes with their intervals) and the counts. It runs
the real command line in this process (``sgdbench run`` / ``compare`` through typer's runner),
with one thread per run, as ``sgdbench run`` does by default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from typer.testing import CliRunner

from benchmarks.slowdown import ENV

# 2 configurations x 2 seeds of an MLP with 4k parameters, batch 32, 400 steps each, timed in
# windows of 20 steps (the evaluations): 10-15 s a trial with 3 repeats at load 3 on 2 cores.
GRID = """
    name = "compare_trials"
    [problem]
    name = "benchmarks.slowdown:regression_from_env"
    n_samples = 2048
    n_features = 32
    hidden = [64, 32]
    [train]
    steps = 400
    eval_every = 20
    repeat = {repeat}
    [grid]
    optimizer = ["sgd", "adam"]
    lr = 0.01
    batch_size = 32
    seed = [0, 1]
"""


def sgdbench(*args: str) -> tuple[int, str]:
    from sgdbench.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


def run_into(grid: Path, out: Path, slowdown: str) -> None:
    os.environ[ENV] = slowdown
    try:
        code, _ = sgdbench("run", str(grid), "--out", str(out), "-q")
    finally:
        os.environ.pop(ENV, None)
    if code != 0:
        raise SystemExit(f"sgdbench run {grid} --out {out}: exit {code}")


def changes(doc: dict) -> str:
    cells = []
    for row in doc["configurations"]:
        c = row["steps/s"]
        lo, hi = c.get("interval") or (float("nan"), float("nan"))
        cells.append(f"{100 * c['change']:+.0f}% [{100 * lo:+.0f},{100 * hi:+.0f}]")
    return " ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="[train] repeat of the grid")
    parser.add_argument("--keep", type=Path, help="write the trial folders here (kept)")
    parser.add_argument("compare_options", nargs="*", help="extra sgdbench compare options")
    args = parser.parse_args()
    alarms = catches = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        grid = root / "grid.toml"
        grid.write_text(textwrap.dedent(GRID.format(repeat=args.repeat)))
        for trial in range(1, args.trials + 1):
            start = time.perf_counter()
            folders = {name: root / f"{trial}-{name}" for name in ("base", "same", "slow")}
            order = ["base", "same", "slow"]
            shift = trial % 3
            for name in order[shift:] + order[:shift]:
                run_into(grid, folders[name], "1.5" if name == "slow" else "")
            out = {}
            for name in ("same", "slow"):
                code, text = sgdbench(
                    "compare",
                    str(folders["base"]),
                    str(folders[name]),
                    "--format",
                    "json",
                    *args.compare_options,
                )
                out[name] = (code, json.loads(text))
            alarms += out["same"][0] != 0
            catches += out["slow"][0] == 1
            load = Path("/proc/loadavg").read_text().split()[0]
            print(
                f"trial {trial:2d} load {load:>5}  A/A exit {out['same'][0]} "
                f"{changes(out['same'][1])}  |  1.5x exit {out['slow'][0]} "
                f"{changes(out['slow'][1])}  ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    n = args.trials
    print(
        f"A/A: exit 0 in {n - alarms} of {n} trials; 1.5x slower step: flagged in {catches} of {n}"
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
