"""Successive halving against the full grid: the same best lr for a fraction of the steps.

Target (issue 15): halving picks the full grid's best lr, or one whose final loss is within the
seeds' spread of it, for at most 30% of the full grid's optimizer steps. "Within the seeds'
spread": the gap between the two configurations' median final losses (both trained to the end in
the full grid) is at most the larger of their spreads over seeds (max - min), i.e. one seed of
either could not tell them apart. Both sweeps run on the
stacked engine in this session; the steps are counted, not timed (deterministic).

    python -m pytest benchmarks/test_halving.py -s

Cases: the shipped ``experiments/lr_sweep_stacked.toml`` (40 lr x 5 seeds, linear regression)
and a 64-lr digits MLP sweep (3 seeds). "Final loss" is the full-data training loss at the end.
"""

from __future__ import annotations

import math
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
}
RESULTS: dict[str, dict[str, float]] = {}


def _train(specs: list[RunSpec]) -> dict[str, tuple[float, list[float], int]]:
    """config lr -> (lr, final losses over seeds (inf if it did not finish ok), steps)."""
    out: dict[str, tuple[float, list[float], int]] = {}
    for unit in plan(specs):
        for spec, traj in zip(unit, execute_unit(unit), strict=True):
            lr, finals, steps = out.get(spec.config_id, (spec.lr, [], 0))
            final = traj.evals["train_loss"][-1] if traj.status == "ok" else math.inf
            out[spec.config_id] = (lr, [*finals, final], steps + traj.steps)
    return out


def _spread(finals: list[float]) -> float:
    return max(finals) - min(finals)


def _best(results: dict[str, tuple[float, list[float], int]]) -> tuple[float, float, float]:
    """(lr, median final loss, spread = max - min over seeds) of the best configuration."""
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

    full = _train(load_grid(full_grid).runs)
    halved = benchmark.pedantic(_train, args=(load_grid(halved_grid).runs,), rounds=1)

    full_lr, full_loss, spread = _best(full)
    lr, _, _ = _best({k: v for k, v in halved.items() if len(v[1]) and v[2] > 0})
    # The halving winner's loss in the full grid (the same runs, trained to the end there).
    winner_finals = next(v[1] for v in full.values() if v[0] == lr)
    winner_full_loss = float(np.median(winner_finals))
    spread = max(spread, _spread(winner_finals))
    ratio = sum(v[2] for v in halved.values()) / sum(v[2] for v in full.values())
    RESULTS[case] = {
        "full_best_lr": full_lr,
        "halving_best_lr": lr,
        "full_best_loss": full_loss,
        "halving_winner_loss": winner_full_loss,
        "seed_spread": spread,
        "steps_ratio": ratio,
    }
    benchmark.extra_info.update(RESULTS[case])
    print(
        f"\n{case}: full grid best lr {full_lr:.4g} (median final loss {full_loss:.4g}, seeds' "
        f"spread {spread:.2g}); halving best lr {lr:.4g} (its full-grid loss "
        f"{winner_full_loss:.4g}); halving trained {ratio:.1%} of the full grid's steps"
    )
    assert ratio <= 0.30
    assert lr == full_lr or winner_full_loss - full_loss <= spread
