"""sgdbench reproduces DeepOBS's published quadratic_deep baselines (experiments/
deepobs_quadratic_deep.toml: batch 128, last partial batch dropped, 100 epochs, seeds 42-51).

Published numbers: the final (epoch 100) train_losses / test_losses of DeepOBS's baseline runs,
github.com/fsschneider/DeepOBS, deepobs/baselines/quadratic_deep/:
- GradientDescentOptimizer, lr 1.5848931925e-02, random_seed 43:        84.58 / 87.53
- MomentumOptimizer (0.99, no Nesterov), lr 2.5118864315e-03, seed 45:  85.06 / 87.07
- AdamOptimizer (0.9, 0.999, 1e-8), lr 3.9810717055e-02, seed 48:       84.61 / 87.12
DeepOBS's seeds change only the data order, as sgdbench's run seeds do; their spread is ~0.1.

What can and cannot agree: sgdbench's noisy_quadratic has DeepOBS's eigenvalues, training and
test samples (NumPy RandomState 42 and 43) but its own Haar-distributed rotation (DeepOBS's
rotation algorithm is not copied). The rotation moves the loss floor itself: over six Haar
rotations with DeepOBS's eigenvalues and samples, the floor ranged over 85.6-87.2 (train) and
84.8-87.8 (test). So absolute losses agree within ALLOWANCE (the floor's range over rotations,
plus the seeds' spread), and what does not depend on the rotation is compared more tightly:
the optimizers' order and gaps on the same instance.
"""

from __future__ import annotations

import pandas as pd
import pytest

from sgdbench.engine import execute_unit, plan
from sgdbench.plan import load_grid
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # the published protocol: seconds of training

PUBLISHED = {  # optimizer: (final train loss, final test loss)
    "sgd": (84.58, 87.53),
    "momentum": (85.06, 87.07),
    "adam": (84.61, 87.12),
}
ALLOWANCE = 3.0  # the rotation's range of the floor (~3.0 on the test set) plus the seeds' spread


SEEDS = (42, 43, 44)  # three of the grid's ten seeds keep the test to seconds


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    """The shipped grid's runs for SEEDS on the stacked engine (one group per optimizer)."""
    grid = load_grid(REPO / "experiments" / "deepobs_quadratic_deep.toml", engine="stacked")
    assert {s.seed for s in grid.runs} == set(range(42, 52))
    specs = [s for s in grid.runs if s.seed in SEEDS]
    rows = []
    for unit in plan(specs):
        for spec, traj in zip(unit, execute_unit(unit), strict=True):
            rows.append(
                {
                    "optimizer": spec.optimizer,
                    "seed": spec.seed,
                    "batch_size": spec.batch_size,
                    "status": traj.status,
                    "steps": traj.steps,
                    "final_loss": traj.evals["train_loss"][-1],
                    "final_val_loss": traj.evals["val_loss"][-1],
                }
            )
    return pd.DataFrame(rows)


def test_protocol_is_deepobs(runs: pd.DataFrame) -> None:
    assert len(runs) == 3 * len(SEEDS) and set(runs["status"]) == {"ok"}
    assert set(runs["batch_size"]) == {128}
    assert set(runs["steps"]) == {700}  # 100 epochs of 1000 // 128 = 7 full batches


def test_final_losses_match_the_published_baselines(runs: pd.DataFrame) -> None:
    median = runs.groupby("optimizer")[["final_loss", "final_val_loss"]].median()
    for optimizer, (train, test) in PUBLISHED.items():
        ours_train, ours_test = median.loc[optimizer]
        assert abs(ours_train - train) <= ALLOWANCE, (optimizer, ours_train, train)
        assert abs(ours_test - test) <= ALLOWANCE, (optimizer, ours_test, test)
    # The noise level is DeepOBS's: with noise 1.0 every loss here would be above 240.
    assert runs["final_loss"].max() < 95


def test_optimizers_rank_and_differ_as_published(runs: pd.DataFrame) -> None:
    """On one instance the floor cancels: SGD and Adam end together (DeepOBS: 0.03 apart),
    momentum 0.99 ends above both on the training set (DeepOBS: +0.48)."""
    train = runs.groupby("optimizer")["final_loss"].median()
    assert abs(train["adam"] - train["sgd"]) < 0.5
    assert train["momentum"] > max(train["sgd"], train["adam"])
    # Momentum's final loss varies more over seeds than SGD's: DeepOBS's momentum curve still
    # oscillates at epoch 100 where SGD's is smooth.
    spread = runs.groupby("optimizer")["final_loss"].agg(lambda s: s.max() - s.min())
    assert spread["momentum"] > spread["sgd"]
