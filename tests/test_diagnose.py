"""Learning-rate verdicts, overfitting and early stopping, checked where the truth is known."""

from __future__ import annotations

import math
import textwrap

import pandas as pd
import pytest
import torch

from sgdbench.diagnose import verdict
from sgdbench.problems import builtin
from tests.helpers import cli


def run(tmp_path, text: str) -> pd.DataFrame:
    (tmp_path / "grid.toml").write_text(textwrap.dedent(text))
    result = cli("run", "grid.toml", "--out", "out", "-q", cwd=tmp_path)
    assert result.exit_code == 0, result
    return pd.read_parquet(tmp_path / "out" / "runs.parquet")


@pytest.fixture(scope="module")
def x_squared(tmp_path_factory) -> pd.DataFrame:
    """GD on f(x) = x² from x0 = -1.5: x_t = x0 (1 - 2γ)^t."""
    return run(
        tmp_path_factory.mktemp("xsq"),
        """
        [problem]
        name = "quadratic"
        [train]
        steps = 100
        init = [-1.5]
        eval_every = 1
        target_loss = 1e-4
        [grid]
        lr = [0.25, 1.0, 1.2, 0.001]
    """,
    ).set_index("lr")


def test_a_good_learning_rate_converges(x_squared):
    row = x_squared.loc[0.25]
    assert row["verdict"] == "converged"
    # 2.25 * 0.25^t <= 1e-4 first at t = 8 (closed form)
    assert row["steps_to_target"] == math.ceil(math.log(2.25 / 1e-4) / math.log(4))


def test_lr_one_bounces_for_ever(x_squared):
    row = x_squared.loc[1.0]
    assert row["verdict"] == "oscillating"
    assert row["update_cosine"] == pytest.approx(-1.0)
    assert row["final_loss"] == pytest.approx(2.25)  # x flips between -1.5 and 1.5
    assert row["status"] == "ok"


def test_too_high_diverges(x_squared):
    row = x_squared.loc[1.2]
    assert row["verdict"] == "diverged" and row["status"] == "diverged"


def test_too_low_is_too_slow_with_a_correct_extrapolation(x_squared):
    row = x_squared.loc[0.001]
    assert row["verdict"] == "too_slow"
    # loss_t = 2.25 (1 - 2γ)^(2t): the target needs t* = ln(2.25/1e-4) / (-2 ln(1 - 2γ)) steps
    exact = math.log(2.25 / 1e-4) / (-2 * math.log(1 - 2 * 0.001))
    assert row["projected_steps_to_target"] == pytest.approx(exact, rel=1e-3)
    assert f"~{exact - 100:,.0f} more steps" in row["verdict_detail"]


def test_noise_floor_is_a_plateau_at_the_least_squares_residual(tmp_path):
    runs = run(
        tmp_path,
        """
        [problem]
        name = "linear"
        n_samples = 200
        n_features = 3
        noise = 0.5
        [train]
        steps = 200
        eval_every = 10
        target_loss = 0.01
        [grid]
        lr = 0.1
        batch_size = "full"
    """,
    )
    row = runs.iloc[0]
    assert row["verdict"] == "plateau"
    problem = builtin.linear(n_samples=200, n_features=3, noise=0.5, seed=0)
    design = torch.cat([problem.X, torch.ones(200, 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, problem.y.double()[:, None]).solution
    floor = float(((design @ solution)[:, 0] - problem.y.double()).pow(2).mean())
    assert row["final_loss"] == pytest.approx(floor, rel=1e-4)


def test_verdict_rules_on_hand_made_curves():
    steps = list(range(0, 101, 10))
    assert verdict("ok", steps, [1.0] * 11, None, 0.9).verdict == "plateau"
    assert verdict("ok", steps, [1.0] * 11, None, -0.9).verdict == "oscillating"
    falling = [0.9**s for s in steps]
    assert verdict("ok", steps, falling, None, 0.9).verdict == "improving"
    # Status ok (the engine did not stop it) but the loss grew: the lr, not the status, is wrong.
    assert verdict("ok", steps, [1.0, *[2.0] * 10], None, 0.0).verdict == "lr_too_high"
    assert verdict("diverged", steps, [1.0, *[2.0] * 10], None, 0.0).verdict == "diverged"
    assert verdict("ok", steps, [*falling[:-1], math.nan], 0.5, 0.0).verdict == "diverged"
    assert verdict("stalled", [0], [1.0], None, math.nan).verdict == "stalled"
    assert verdict("failed", [], [], None, math.nan).verdict is None


def test_overfitting_best_validation_step_and_early_stopping(tmp_path):
    grid = """
        [problem]
        name = "digits"
        model = "mlp"
        hidden = [128]
        val_fraction = 0.7
        [train]
        epochs = 60
        {stopping}
        [grid]
        optimizer = "adam"
        lr = 0.01
        batch_size = 64
    """
    full = run(tmp_path, grid.format(stopping="")).iloc[0]
    evals = pd.read_parquet(tmp_path / "out" / "evals")
    best = evals.loc[evals["val_loss"].idxmin()]
    assert full["best_val_step"] == best["step"] < full["steps"]
    assert evals["val_loss"].iloc[-1] > 1.2 * full["best_val_loss"]  # it overfits afterwards
    stopped_dir = tmp_path / "stopped"
    stopped_dir.mkdir()
    stopped = run(stopped_dir, grid.format(stopping="early_stopping = {patience = 3}")).iloc[0]
    assert "early stopping" in stopped["message"] and stopped["status"] == "ok"
    assert stopped["steps"] < full["steps"]
    # it stops 3 evaluations (epochs here) after the best one
    assert stopped["steps"] == stopped["best_val_step"] + 3 * (
        stopped["steps"] // stopped["epochs"]
    )


def test_frozen_weights_are_stalled(tmp_path):
    (tmp_path / "frozen_plugin.py").write_text(
        textwrap.dedent("""
        import torch
        from sgdbench import Problem
        def make():
            model = torch.nn.Linear(2, 1).requires_grad_(False)
            X = torch.ones(4, 2)
            return Problem(model, lambda o, y: ((o.squeeze(-1) - y) ** 2).mean(), X, X.sum(1))
    """)
    )
    row = run(
        tmp_path,
        """
        [problem]
        name = "frozen_plugin:make"
        [train]
        steps = 5
        [grid]
        lr = 0.1
        batch_size = 2
    """,
    ).iloc[0]
    assert row["status"] == "stalled" and "frozen weights" in row["message"]
    assert row["verdict"] == "stalled" and row["steps"] == 0


def test_a_loss_levelling_off_far_above_target_is_a_plateau_not_too_slow():
    # L(t) = 0.48 + e^(-t/10): a floor at 0.48, as Adam at a too-high lr; never "train longer"
    steps = list(range(0, 201, 10))
    losses = [0.48 + math.exp(-s / 10) for s in steps]
    assert verdict("ok", steps, losses, 0.05, 0.0).verdict == "plateau"
    # a steady exponential descent (x² at a small lr) stays too_slow
    steady = [2.25 * 0.99**s for s in steps]
    assert verdict("ok", steps, steady, 1e-4, 0.9).verdict == "too_slow"


def test_noisy_quadratic_noise_floor_grows_with_the_lr(tmp_path):
    """SGD at batch size 1 on DeepOBS's noisy quadratic: the larger lr settles on a higher
    floor, so it is "too high for this batch size", not "too slow"."""
    from sgdbench import report

    run(
        tmp_path,
        """
        [problem]
        name = "noisy_quadratic"
        dim = 20
        n_samples = 200
        noise = 2.0
        [train]
        steps = 400
        target_loss = 1.0
        eval_every = 20
        [grid]
        lr = [0.002, 0.02]
        batch_size = 1
    """,
    )
    runs, _, _ = report.build(tmp_path / "out")
    row = runs.set_index("lr").loc[0.02]
    assert row["verdict"] == "lr_too_high"
    assert "lr 0.002 reaches" in row["verdict_detail"] and "batch size 1" in row["verdict_detail"]
    assert runs.set_index("lr").loc[0.002, "verdict"] != "lr_too_high"
