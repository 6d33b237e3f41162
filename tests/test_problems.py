"""Built-in problems, the file problem, plug-ins and init."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from sgdbench.errors import GridError
from sgdbench.plan import load_grid
from sgdbench.problems import builtin
from sgdbench.problems.factory import apply_init
from sgdbench.problems.files import from_table
from tests.helpers import cli


def test_rosenbrock_starts_where_deepobs_does():
    problem = builtin.rosenbrock()
    assert problem.model.x.tolist() == [-0.5, 1.5]
    assert problem.model().item() == pytest.approx((1 + 0.5) ** 2 + 100 * (1.5 - 0.25) ** 2)


def test_digits_binary_subset_with_validation():
    problem = builtin.digits(classes=[3, 7], val_fraction=0.25)
    assert set(problem.y.tolist()) == {0, 1}
    n = len(problem.y) + len(problem.y_val)
    assert n == 183 + 179  # the digits data set has 183 threes and 179 sevens
    assert len(problem.y_val) == round(0.25 * n)
    assert problem.X.max() <= 1.0 and problem.model(problem.X[:2]).shape == (2, 2)


def test_linear_init_zeros_and_explicit_values():
    problem = builtin.linear(n_samples=10, n_features=2)
    apply_init(problem, "zeros")
    assert all((p == 0).all() for p in problem.model.parameters())
    apply_init(problem, [1.0, 2.0, 3.0])  # weights then bias
    assert problem.model.weight.tolist() == [[1.0, 2.0]] and problem.model.bias.tolist() == [3.0]
    with pytest.raises(ValueError, match="init has 2 values, the model has 3"):
        apply_init(problem, [1.0, 2.0])


def test_linear_with_given_weights_is_y_equals_2x_plus_3():
    problem = builtin.linear(
        n_samples=50, n_features=1, noise=0.0, weights=[2.0], bias=3.0, x_low=0.0, x_high=2.0
    )
    torch.testing.assert_close(problem.y, 2 * problem.X[:, 0] + 3)
    assert problem.X.min() >= 0 and problem.X.max() <= 2


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_problem_reads_csv_and_parquet(tmp_path, suffix):
    df = pd.DataFrame(
        {
            "x1": [0.0, 1.0, 2.0, 3.0],
            "x2": [1.0, 1.0, 0.0, 0.0],
            "label": ["cat", "dog", "cat", "dog"],
            "junk": [9, 9, 9, 9],
        }
    )
    path = tmp_path / f"data{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    problem = from_table(str(path), target="label", features=["x1", "x2"], task="classification")
    assert problem.X.tolist() == df[["x1", "x2"]].to_numpy().tolist()  # file order kept
    assert problem.y.tolist() == [0, 1, 0, 1]  # classes in sorted order
    assert problem.model(problem.X).shape == (4, 2)
    reg = from_table(str(path), target="x1", features=["x2", "junk"])
    assert reg.y.tolist() == [0.0, 1.0, 2.0, 3.0] and reg.task == "regression"


@pytest.mark.slow  # end to end: run, report
def test_file_problem_end_to_end_with_mlp_and_validation(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    df = pd.DataFrame(X, columns=list("abcd"))
    df["y"] = (X[:, 0] + X[:, 1] > 0).astype(int)
    df.to_parquet(tmp_path / "train.parquet")
    (tmp_path / "grid.toml").write_text(
        textwrap.dedent("""
        [problem]
        name = "file"
        path = "train.parquet"
        target = "y"
        task = "classification"
        model = "mlp"
        hidden = [8]
        val_fraction = 0.25
        [train]
        epochs = 20
        [grid]
        optimizer = "adam"
        lr = 0.01
        batch_size = 16
    """)
    )
    result = cli("run", "grid.toml", "--out", "out", "-q", cwd=tmp_path)
    assert result.exit_code == 0, result
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert runs["final_val_accuracy"].item() > 0.85
    evals = pd.read_parquet(tmp_path / "out" / "evals")
    assert evals["val_loss"].notna().all() and evals["train_accuracy"].notna().all()


def test_plugin_must_return_a_problem(tmp_path, write_grid):
    (tmp_path / "wrong_type_plugin.py").write_text("def make():\n    return 42\n")
    path = write_grid("""
        [problem]
        name = "wrong_type_plugin:make"
        [train]
        steps = 2
        [grid]
        lr = 0.1
        batch_size = 1
    """)
    with pytest.raises(GridError, match=r"returned int, not an sgdbench\.Problem"):
        load_grid(path)


def test_plugin_receives_the_remaining_problem_keys(tmp_path, write_grid):
    (tmp_path / "keyed_plugin.py").write_text(
        textwrap.dedent("""
        import torch
        from sgdbench import Problem
        def make(n, scale=1.0):
            X = torch.ones(n, 1) * scale
            return Problem(torch.nn.Linear(1, 1), lambda o, y: ((o.squeeze(-1) - y) ** 2).mean(),
                           X, torch.zeros(n))
    """)
    )
    grid = load_grid(
        write_grid("""
        [problem]
        name = "keyed_plugin:make"
        n = 7
        scale = 2.0
        [train]
        epochs = 1
        [grid]
        lr = 0.1
        batch_size = 7
    """)
    )
    (run,) = grid.runs
    assert run.problem_kwargs == {"n": 7, "scale": 2.0} and run.n_samples == 7
