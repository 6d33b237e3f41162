"""Steps to target are exact to the step whatever ``eval_every`` is (DESIGN §5), on both engines
and in ``report --target-loss``."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from sgdbench.engine import seeding
from sgdbench.plan import load_grid
from sgdbench.problems.factory import apply_init, build_problem
from tests.helpers import cli

LRS = [0.01, 0.05, 0.1, 0.25, 0.3]
TARGET = 1e-4


def run_grid(tmp_path, text: str, *args: str, out: str = "out") -> pd.DataFrame:
    (tmp_path / "grid.toml").write_text(textwrap.dedent(text))
    result = cli("run", "grid.toml", "--out", out, "-q", *args, cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    return pd.read_parquet(tmp_path / out / "runs.parquet")


def closed_form_step(gamma: float, target: float) -> int:
    """First t with (1.5 (1 - 2γ)^t)² <= target: gradient descent on x² from -1.5."""
    losses = (1.5 * (1 - 2 * gamma) ** np.arange(10_000, dtype=np.float64)) ** 2
    t = int(np.argmax(losses <= target))
    # the test means something only if float32 rounding cannot move the step
    assert losses[t] < target * (1 - 1e-4) and losses[t - 1] > target * (1 + 1e-4)
    return t


QUADRATIC = """
name = "x2"
[problem]
name = "quadratic"
[train]
steps = 400
init = [-1.5]
eval_every = {eval_every}
target_loss = {target}
[grid]
optimizer = "sgd"
lr = {lrs}
"""


@pytest.mark.parametrize("engine", ["eager", "stacked"])
@pytest.mark.parametrize("eval_every", [300, 0])
def test_x_squared_step_to_target_is_the_closed_forms(tmp_path, engine, eval_every):
    """Every closed-form step (6 to 229) lies far inside the first evaluation window."""
    grid = QUADRATIC.format(eval_every=eval_every, target=TARGET, lrs=LRS)
    runs = run_grid(tmp_path, grid, "--engine", engine)
    assert set(runs["engine"]) == {engine}
    steps = pd.read_parquet(tmp_path / "out" / "steps")
    for run in runs.itertuples():
        t = closed_form_step(run.lr, TARGET)
        assert run.steps_to_target == t, run.lr
        assert run.samples_to_target == t  # function problem: one "sample" a step
        # time: the training clock after step t, as the steps table has it
        clock = steps[(steps["run_id"] == run.run_id) & (steps["step"] == t - 1)]["time_s"]
        assert run.time_to_target_s == pytest.approx(float(clock.iloc[0]), rel=1e-12)
        assert run.time_to_target_s < run.train_time_s


def test_x_squared_target_already_met_at_the_start(tmp_path):
    runs = run_grid(tmp_path, QUADRATIC.format(eval_every=300, target=3.0, lrs=[0.1]))
    assert runs.loc[0, "steps_to_target"] == 0 and runs.loc[0, "time_to_target_s"] == 0.0


LINEAR = """
name = "lin"
[problem]
name = "linear"
n_samples = 100
n_features = 3
noise = 0.1
[train]
epochs = 8
eval_every = 40
target_loss = {target}
[grid]
optimizer = "sgd"
lr = 0.05
batch_size = 10
seed = [0, 1]
"""


def full_data_losses_after_every_step(spec) -> tuple[np.ndarray, np.ndarray]:
    """An independent plain loop: minibatch losses, and the full-data loss after t updates."""
    problem = build_problem(
        spec.problem, spec.problem_kwargs, seeding.derive_seed(spec.seed, seeding.INIT)
    )
    apply_init(problem, spec.init)
    model, loss_fn, X, y = problem.model, problem.loss_fn, problem.X, problem.y
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr)
    with torch.no_grad():
        minibatch, full = [], [float(loss_fn(model(X), y))]
    for epoch in range(spec.steps // spec.steps_per_epoch):
        g = torch.Generator()
        g.manual_seed(seeding.derive_seed(spec.seed, seeding.DATA_ORDER, epoch))
        order = torch.randperm(len(X), generator=g)
        for start in range(0, len(X), spec.batch_size):
            idx = order[start : start + spec.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            optimizer.step()
            minibatch.append(loss.item())
            with torch.no_grad():
                full.append(float(loss_fn(model(X), y)))
    return np.asarray(minibatch, np.float32), np.asarray(full)


def a_clear_target(full: np.ndarray) -> tuple[float, int]:
    """A target whose first crossing is not at an evaluation (every 40 steps) and that no
    float rounding could move: (target, first step at or below it)."""
    for target in np.geomspace(full[0], full.min(), 200)[1:-1]:
        t = int(np.argmax(full <= target))
        margin = np.abs(full[: t + 1] - target).min() / target
        if t % 40 and margin > 1e-4:
            return float(target), t
    raise AssertionError("no clear target")


@pytest.mark.parametrize("engine", ["eager", "stacked"])
def test_linear_regression_batch_10_matches_a_loop_evaluating_every_step(tmp_path, engine):
    spec = load_grid(_write(tmp_path, LINEAR.format(target=1.0))).runs[0]
    minibatch, full = full_data_losses_after_every_step(spec)
    target, expected = a_clear_target(full)
    runs = run_grid(tmp_path, LINEAR.format(target=target), "--engine", engine, out="exact")
    run = runs.set_index("seed").loc[spec.seed]
    assert run["steps_to_target"] == expected
    assert run["samples_to_target"] == expected * 10
    if engine == "eager":  # same trajectory, bit for bit, as the independent loop
        steps = pd.read_parquet(tmp_path / "exact" / "steps" / f"{run['run_id']}.parquet")
        np.testing.assert_array_equal(steps["loss"].to_numpy(), minibatch)


def _write(tmp_path, text: str):
    path = tmp_path / "spec.toml"
    path.write_text(textwrap.dedent(text))
    return path


def configurations(doc: str) -> dict[float, dict]:
    return {row["lr"]: row for row in json.loads(doc)["configurations"]}


@pytest.mark.slow  # a grid end to end, then its report
@pytest.mark.parametrize("engine", ["eager", "stacked"])
def test_report_target_loss_agrees_with_a_run_at_that_target(tmp_path, engine):
    lrs = [0.01, 0.05, 0.1]
    run_grid(tmp_path, QUADRATIC.format(eval_every=300, target=1e-2, lrs=lrs), "--engine", engine)
    run_grid(
        tmp_path,
        QUADRATIC.format(eval_every=300, target=TARGET, lrs=lrs),
        "--engine",
        engine,
        out="direct",
    )
    recomputed = cli("report", tmp_path / "out", "--target-loss", str(TARGET), "--format", "json")
    direct = cli("report", tmp_path / "direct", "--format", "json")
    assert recomputed.exit_code == 0, recomputed.stderr
    got, want = configurations(recomputed.stdout), configurations(direct.stdout)
    for lr in lrs:
        assert got[lr]["steps_to_target_median"] == closed_form_step(lr, TARGET)
        for col in ("steps_to_target_median", "samples_to_target_median", "reached"):
            assert got[lr][col] == want[lr][col]
    # the time is the stored run's clock at that step, not the rerun's
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet").set_index("lr")
    steps = pd.read_parquet(tmp_path / "out" / "steps")
    for lr in lrs:
        t = closed_form_step(lr, TARGET)
        own = steps[(steps["run_id"] == runs.loc[lr, "run_id"]) & (steps["step"] == t - 1)]
        assert got[lr]["time_to_target_s_median"] == pytest.approx(own["time_s"].iloc[0])


def test_report_target_loss_refuses_a_rerun_that_does_not_reproduce(tmp_path):
    run_grid(tmp_path, QUADRATIC.format(eval_every=300, target=1e-2, lrs=[0.1]))
    steps_file = next((tmp_path / "out" / "steps").glob("*.parquet"))
    steps = pd.read_parquet(steps_file)
    steps.loc[5, "loss"] += 1.0  # the stored run no longer is what this code computes
    steps.to_parquet(steps_file)
    result = cli("report", tmp_path / "out", "--target-loss", str(TARGET))
    assert result.exit_code == 1
    assert "did not reproduce its first 300 steps" in result.stderr


def test_a_run_that_does_not_replay_bit_for_bit_fails_loudly(tmp_path):
    """A plug-in drawing from an RNG the run does not own cannot claim an exact step."""
    (tmp_path / "noisy_plug.py").write_text(
        textwrap.dedent(
            """
            import random
            import torch
            from sgdbench import Problem

            class Model(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.x = torch.nn.Parameter(torch.tensor([-1.5]))

                def forward(self, _):
                    return (self.x * (1 + 0.01 * random.random())).square().sum()

            def make():
                return Problem(Model(), lambda out, y: out, task="function")
            """
        )
    )
    grid = QUADRATIC.format(eval_every=300, target=TARGET, lrs=[0.1]).replace(
        'name = "quadratic"', 'name = "noisy_plug:make"'
    )
    (tmp_path / "grid.toml").write_text(grid)
    result = cli("run", "grid.toml", "--out", "out", "-q", "--engine", "eager", cwd=tmp_path)
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert result.exit_code == 1
    assert runs.loc[0, "status"] == "failed"
    assert "the run is not deterministic" in runs.loc[0, "message"]
