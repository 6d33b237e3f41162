"""Bitwise trajectories: a handful of representative eager and stacked runs keep the loss digests
recorded here. Any change to what a run computes (batch order, update order, where a run stops,
which members leave a stack when) changes a digest.

When a change of trajectories is *meant*, regenerate the table and say so in the commit:

    OMP_NUM_THREADS=1 python tests/test_engine_digests.py   # prints DIGESTS, paste it below

The full check over every shipped experiment is ``/work/baseline/digests.py``-style: run each
grid and compare the ``loss_digest`` column of runs.parquet before and after.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from sgdbench.engine import execute_unit, plan
from sgdbench.metrics import loss_digest
from sgdbench.plan import load_grid

GRIDS = {
    # minibatches of a shuffled linear problem; SGD, momentum, Adam under a cosine schedule
    "eager-linear": """
        [problem]
        name = "linear"
        n_samples = 64
        n_features = 3
        noise = 0.5
        [train]
        threads = 1
        steps = 300
        eval_every = 100
        schedule = "cosine"
        [grid]
        optimizer = ["sgd", "nesterov", "adam"]
        lr = 0.02
        batch_size = 8
        seed = [0, 1]
    """,
    # an MLP classifier with validation data and early stopping; LBFGS (a closure) on a function
    "eager-digits": """
        [problem]
        name = "digits"
        classes = [3, 7]
        model = "mlp"
        hidden = [8]
        val_fraction = 0.5
        [train]
        threads = 1
        steps = 300
        eval_every = 10
        early_stopping = {patience = 2}
        [grid]
        optimizer = ["adamw", "rmsprop"]
        lr = 0.05
        batch_size = 16
    """,
    "eager-lbfgs": """
        [problem]
        name = "rosenbrock"
        [train]
        threads = 1
        steps = 30
        [grid]
        optimizer = "lbfgs"
        lr = [0.1, 1.0]
    """,
    # divergence inside a window, and reaching the target at an evaluation
    "eager-stops": """
        [problem]
        name = "quadratic"
        [train]
        threads = 1
        steps = 600
        init = [-1.5]
        eval_every = 5
        target_loss = 1e-3
        stop_at_target = true
        [grid]
        optimizer = "sgd"
        lr = [0.1, 1.5]
    """,
    # stacks: members of two seeds, mixed hyperparameters, one member diverging (it leaves the
    # stack and the others go on), one reaching its target early
    "stacked-linear": """
        [problem]
        name = "linear"
        n_samples = 64
        n_features = 3
        noise = 0.5
        [train]
        threads = 1
        steps = 300
        eval_every = 50
        engine = "stacked"
        target_loss = 0.3
        stop_at_target = true
        [grid]
        optimizer = ["momentum", "adam", "rmsprop", "adagrad"]
        lr = [0.01, 0.3, 2.5]
        batch_size = 8
        seed = [0, 1]
    """,
    "stacked-mlp": """
        [problem]
        name = "digits"
        classes = [3, 7]
        model = "mlp"
        hidden = [8]
        [train]
        threads = 1
        steps = 200
        eval_every = 50
        engine = "stacked"
        schedule = "cosine"
        [grid]
        optimizer = ["adamw", "sgd"]
        lr = [0.003, 0.03]
        batch_size = 16
        seed = [0, 1]
    """,
}


def compute_digests(name: str, folder: Path) -> list[tuple[str, int, str]]:
    """(status, steps, loss digest prefix) of every run of grid ``name``, in the grid's order."""
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\n' + textwrap.dedent(GRIDS[name]))
    trajs = [t for unit in plan(load_grid(path).runs) for t in execute_unit(unit)]
    return [(t.status, t.steps, loss_digest(t.losses)[:16]) for t in trajs]


# Recorded on main before the engine refactor (issue 12): status, steps, loss digest prefix.
DIGESTS: dict[str, list[tuple[str, int, str]]] = {
    "eager-linear": [
        ("ok", 300, "490ce2878a7f474e"),
        ("ok", 300, "4bd030c1c9d3de58"),
        ("ok", 300, "cfce6c452a8ea795"),
        ("ok", 300, "aab81c032795f54e"),
        ("ok", 300, "a5695c5bad6546df"),
        ("ok", 300, "53e89b997770e7a8"),
    ],
    "eager-digits": [
        ("ok", 50, "94c0ba7a5c1415f1"),
        ("ok", 70, "ced7198826d2bae7"),
    ],
    "eager-lbfgs": [
        ("ok", 30, "7cb1a03c018349ab"),
        ("ok", 30, "c5b2404fe46c3c42"),
    ],
    "eager-stops": [
        ("ok", 20, "2c405f275e2a189c"),
        ("diverged", 10, "7b71a8eb1d66a0e9"),
    ],
    "stacked-linear": [
        ("ok", 50, "a0e3d8c93b88d5f4"),
        ("ok", 50, "3752e5a4125f49a1"),
        ("ok", 300, "2b6bfcd29259f797"),
        ("diverged", 150, "8303c1d24b568547"),
        ("diverged", 10, "0f7abea82c6096b0"),
        ("diverged", 10, "923a50f601b0bbb1"),
        ("ok", 300, "2b84cce6a1b693c1"),
        ("ok", 300, "6b4f2d244854c652"),
        ("ok", 50, "a891ba79ecf81783"),
        ("ok", 50, "afd4681899a05156"),
        ("ok", 50, "aa389ead35e8f885"),
        ("ok", 300, "d5dc0cf7bfe7103f"),
        ("ok", 150, "6621e871e0ee2530"),
        ("ok", 150, "065bf2e372a66baa"),
        ("ok", 150, "dfc0ee1f671fd9cd"),
        ("ok", 100, "33b8670022a49b85"),
        ("ok", 150, "9d2443bd973c586d"),
        ("ok", 300, "1622a089b21f0b7a"),
        ("ok", 300, "b11ea535e0ddb616"),
        ("ok", 300, "4feab79bf09cdf00"),
        ("ok", 50, "e6a3fa1f275e8871"),
        ("ok", 50, "738e473724ecf344"),
        ("ok", 100, "65c0969c6f780359"),
        ("ok", 100, "7125928bf3be4537"),
    ],
    "stacked-mlp": [
        ("ok", 200, "40a5660a4b76c5db"),
        ("ok", 200, "0f4bb2e5add4cf27"),
        ("ok", 200, "2873512096cc2c66"),
        ("ok", 200, "f3124f8db802ef8b"),
        ("ok", 200, "f3c8feb481cb6b39"),
        ("ok", 200, "fab463a96e95b5a5"),
        ("ok", 200, "c25b635fb38331a8"),
        ("ok", 200, "bd552d477b442e6b"),
    ],
}


@pytest.mark.parametrize("name", GRIDS)
def test_representative_runs_keep_their_loss_digests(tmp_path: Path, name: str) -> None:
    assert compute_digests(name, tmp_path) == DIGESTS[name]


if __name__ == "__main__":
    sys.path.insert(0, ".")
    with tempfile.TemporaryDirectory() as d:
        for grid in GRIDS:
            print(f"    {grid!r}: [")
            for row in compute_digests(grid, Path(d)):
                print(f"        {row!r},")
            print("    ],")
