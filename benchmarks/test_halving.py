"""Successive halving against the full grid: the same best lr for a fraction of the steps.

Target (issue 15): halving picks the full grid's best lr, or one whose final loss is within the
seeds' spread of it, for at most 30% of the full grid's optimizer steps. "Within the seeds'
spread": the gap between the two configurations' median final losses (both trained to the end in
the full grid) is at most the larger of their spreads over seeds (max - min), i.e. one seed of
either could not tell them apart. The first two sweeps run on the stacked engine, the third on
the eager engine (SGD and Adam halved together); the steps are counted, not timed
(deterministic). The CPU time of each side is recorded as well (``extra_info``).

    python -m pytest benchmarks/test_halving.py -s

Cases: the shipped ``experiments/lr_sweep_stacked.toml`` (40 lr x 5 seeds, linear regression)
and a 64-lr digits MLP sweep (3 seeds) on the stacked engine; on the eager engine, a digits MLP
sweep of SGD and Adam x 16 lrs x 2 seeds. "Final loss" is the full-data training loss at the
end.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from sgdbench.engine import execute_unit, plan
from sgdbench.plan import load_grid
from sgdbench.spec import RunSpec

REPO = Path(__file__).resolve().parents[1]
DIGITS = """
name = "digits_mlp_lr_sweep"
[problem]
name = "digits"
model = "mlp"
hidden = [32]
[train]
engine = "stacked"
epochs = 9
eval_every = 0
[grid]
batch_size = 32
seed = [0, 1, 2]
lr = [{lrs}]
"""
EAGER = """
name = "digits_mlp_eager_sweep"
[problem]
name = "digits"
model = "mlp"
hidden = [32]
[train]
engine = "eager"
epochs = 6
eval_every = 0
[grid]
optimizer = ["sgd", "adam"]
batch_size = 32
seed = [0, 1]
lr = [{lrs}]
"""
CASES = {
    # (grid text, [search] appended for halving)
    "lr_sweep_stacked": (
        (REPO / "experiments" / "lr_sweep_stacked.toml").read_text(),
        '\n[search]\nmethod = "halving"\neta = 3\nmin_epochs = 1\n',
    ),
    "digits_mlp_64lr": (
        DIGITS.format(lrs=", ".join(f"{lr:.4g}" for lr in np.logspace(-3, 1, 64))),
        '\n[search]\nmethod = "halving"\neta = 3\nmin_steps = 15\n',
    ),
    "eager_digits_sgd_adam_16lr": (
        EAGER.format(lrs=", ".join(f"{lr:.4g}" for lr in np.logspace(-4, 0.5, 16))),
        '\n[search]\nmethod = "halving"\neta = 3\nmin_steps = 15\n',
    ),
}
RESULTS: dict[str, dict[str, float]] = {}


Label = tuple[str, float]  # (optimizer, lr): a configuration, the same with or without halving


def _train(specs: list[RunSpec]) -> dict[str, tuple[Label, list[float], int]]:
    """config -> ((optimizer, lr), final losses over seeds (inf if it did not finish ok), steps)."""
    out: dict[str, tuple[Label, list[float], int]] = {}
    for unit in plan(specs):
        for spec, traj in zip(unit, execute_unit(unit), strict=True):
            label = (spec.optimizer, spec.lr)
            lr, finals, steps = out.get(spec.config_id, (label, [], 0))
            final = traj.evals["train_loss"][-1] if traj.status == "ok" else math.inf
            out[spec.config_id] = (lr, [*finals, final], steps + traj.steps)
    return out


def _spread(finals: list[float]) -> float:
    return max(finals) - min(finals)


def _best(results: dict[str, tuple[Label, list[float], int]]) -> tuple[Label, float, float]:
    """(label, median final loss, spread = max - min over seeds) of the best configuration."""
    lr, finals, _ = min(
        (v for v in results.values() if all(map(math.isfinite, v[1]))),
        key=lambda v: float(np.median(v[1])),
    )
    return lr, float(np.median(finals)), _spread(finals)


@pytest.mark.parametrize("case", CASES)
def test_halving_finds_the_best_lr_for_a_fraction_of_the_steps(
    benchmark, tmp_path: Path, case: str
) -> None:
    text, search = CASES[case]
    full_grid = tmp_path / f"{case}.toml"
    full_grid.write_text(text)
    halved_grid = tmp_path / f"{case}-halving.toml"
    halved_grid.write_text(text + search)

    cpu = time.process_time()
    full = _train(load_grid(full_grid).runs)
    full_cpu_s, cpu = time.process_time() - cpu, time.process_time()
    halved = benchmark.pedantic(_train, args=(load_grid(halved_grid).runs,), rounds=1)
    halved_cpu_s = time.process_time() - cpu

    full_lr, full_loss, spread = _best(full)
    lr, _, _ = _best({k: v for k, v in halved.items() if len(v[1]) and v[2] > 0})
    # The halving winner's loss in the full grid (the same runs, trained to the end there).
    winner_finals = next(v[1] for v in full.values() if v[0] == lr)
    winner_full_loss = float(np.median(winner_finals))
    spread = max(spread, _spread(winner_finals))
    ratio = sum(v[2] for v in halved.values()) / sum(v[2] for v in full.values())
    RESULTS[case] = {
        "full_best_lr": full_lr[1],
        "halving_best_lr": lr[1],
        "full_best_loss": full_loss,
        "halving_winner_loss": winner_full_loss,
        "seed_spread": spread,
        "steps_ratio": ratio,
        "cpu_ratio": halved_cpu_s / full_cpu_s,
        "load_average": os.getloadavg()[0],
    }
    benchmark.extra_info.update(RESULTS[case])
    print(
        f"\n{case}: full grid best {full_lr[0]} lr {full_lr[1]:.4g} (median final loss "
        f"{full_loss:.4g}, seeds' spread {spread:.2g}); halving best {lr[0]} lr {lr[1]:.4g} "
        f"(its full-grid loss {winner_full_loss:.4g}); halving trained {ratio:.1%} of the full "
        f"grid's steps, {halved_cpu_s / full_cpu_s:.1%} of its CPU time "
        f"(load average {os.getloadavg()[0]:.2f})"
    )
    assert ratio <= 0.30
    assert lr == full_lr or winner_full_loss - full_loss <= spread
