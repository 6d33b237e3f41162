"""The learning-rate range test and the stacked lr sweep (``sgdbench lr-find``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sgdbench import lrfind
from sgdbench.plan import load_grid
from tests.helpers import cli

X_SQUARED = """
    name = "x_squared"
    [problem]
    name = "quadratic"
    [train]
    steps = 10
    init = [1.0]
    [grid]
    lr = 0.1
"""

LINEAR = """
    name = "linreg"
    [problem]
    name = "linear"
    n_samples = 256
    n_features = 5
    noise = 0.1
    [train]
    epochs = 4
    target_loss = 0.05
    eval_every = 0
    [grid]
    lr = {lr}
    batch_size = 16
"""


def test_exponential_lrs_hit_both_ends_at_a_constant_ratio() -> None:
    lrs = lrfind.exponential_lrs(1e-4, 1.0, 5)
    np.testing.assert_allclose(lrs, [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    with pytest.raises(ValueError):
        lrfind.exponential_lrs(1.0, 1e-4, 5)


def test_smoothing_is_bias_corrected_like_fastai() -> None:
    # A constant series stays constant (an uncorrected EMA would start near 0).
    np.testing.assert_allclose(lrfind.smooth(np.full(5, 3.0)), 3.0)
    # Second value: (0.02 * 0.98 * 1 + 0.02 * 2) / (1 - 0.98**2).
    expected = (0.98 * 0.02 * 1.0 + 0.02 * 2.0) / (1 - 0.98**2)
    assert lrfind.smooth(np.array([1.0, 2.0]))[1] == pytest.approx(expected)


def test_suggestions_follow_the_named_rules() -> None:
    lrs = lrfind.exponential_lrs(1e-3, 1.0, 4)  # 1e-3, 1e-2, 1e-1, 1
    smoothed = np.array([5.0, 4.0, 1.0, 2.0])  # steepest fall: from 1e-2 to 1e-1; minimum at 1e-1
    got = lrfind.suggest(lrs, smoothed)
    assert got["steepest"] == pytest.approx(1e-2)
    assert got["minimum/10"] == pytest.approx(1e-2)


def test_range_test_on_x_squared_blows_up_at_the_stability_limit(
    write_grid: Callable[..., Path],
) -> None:
    # Gradient descent on f(x) = x² (L = 2) contracts for lr < 2/L = 1 and grows beyond it.
    spec = load_grid(write_grid(X_SQUARED)).runs[0]
    test = lrfind.range_test(spec, start=1e-3, end=100.0, steps=100)
    assert test.stopped_at_lr is not None
    assert 1.0 < test.stopped_at_lr < 2.0
    assert 0.8 < test.min_loss_lr < 1.25
    # Up to the limit the loss only falls; after the minimum it only grows.
    below = test.losses[test.lrs < 0.99]
    assert np.all(np.diff(below) <= 0)
    assert len(test.losses) < 100  # stopped early, not at the end lr


@pytest.mark.slow  # trains the suggested lrs
def test_range_test_suggestion_converges_when_run_as_a_grid(
    write_grid: Callable[..., Path], tmp_path: Path
) -> None:
    grid = write_grid(LINEAR.format(lr=0.1))
    result = cli(
        "lr-find", grid, "--start", "1e-4", "--end", "10", "--format", "json", cwd=tmp_path
    )
    assert result.exit_code == 0, result
    answer = json.loads(result.stdout)
    assert answer["stopped_at_lr"] is not None
    assert Path(tmp_path / answer["plot"]).stat().st_size > 0
    assert len(answer["lr"]) == len(answer["loss"]) == len(answer["smoothed_loss"])
    suggested = answer["suggestions"]["minimum/10"]
    assert suggested < answer["stopped_at_lr"]

    run_grid = write_grid(LINEAR.format(lr=suggested), name="suggested.toml")
    ran = cli("run", run_grid, "--out", tmp_path / "out", "-q")
    assert ran.exit_code == 0, ran
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert runs["status"].tolist() == ["ok"]
    assert runs["final_loss"].iloc[0] < 0.05


def test_sweep_trains_every_lr_on_the_stacked_engine(write_grid: Callable[..., Path]) -> None:
    spec = load_grid(write_grid(LINEAR.format(lr=0.1))).runs[0]
    result = lrfind.lr_sweep(spec, start=1e-3, end=100.0, k=9, steps=50)
    assert len(result.final_losses) == 9
    assert result.statuses[-1] == "diverged"  # lr = 100 on a unit-scale regression
    assert np.isnan(result.final_losses[-1])
    assert 1e-2 <= result.best_lr <= 1.0
    # Each member equals its own eager run (the stacked engine's promise), e.g. the best one.
    from sgdbench.engine import eager

    best = int(np.nanargmin(result.final_losses))
    member = lrfind.sweep_specs(spec, result.lrs, 50)[best]
    alone = eager.run(dataclasses.replace(member, engine="eager"))
    assert alone.evals["train_loss"][-1] == pytest.approx(result.final_losses[best], rel=1e-4)


def test_sweep_cli_prints_every_lr(write_grid: Callable[..., Path], tmp_path: Path) -> None:
    grid = write_grid(LINEAR.format(lr=0.1))
    out = tmp_path / "sweep.svg"
    result = cli("lr-find", grid, "--sweep", "--k", "5", "--steps", "20", "--out", out)
    assert result.exit_code == 0, result
    assert out.stat().st_size > 0
    assert "best lr" in result.stdout
    assert len([line for line in result.stdout.splitlines() if "ok" in line.split()]) >= 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "1", "--end", "0.1"], "0 < --start < --end"),
        (["--stop-factor", "1"], "--stop-factor must be > 1"),
        (["--out", "x.gif"], "unknown picture type"),
    ],
)
def test_bad_options_are_one_line_errors_and_write_nothing(
    write_grid: Callable[..., Path], tmp_path: Path, args: list[str], message: str
) -> None:
    grid = write_grid(X_SQUARED)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("lr-find", grid, *args, cwd=tmp_path)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_sweep_with_an_optimizer_the_stacked_engine_lacks_is_exit_2(
    write_grid: Callable[..., Path], tmp_path: Path
) -> None:
    grid = write_grid(X_SQUARED.replace("lr = 0.1", 'lr = 0.1\n    optimizer = "lbfgs"'))
    result = cli("lr-find", grid, "--sweep", "--k", "3", cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"{grid}: lr-find --sweep runs on the stacked engine: the stacked engine implements "
        "SGD, Adam, AdamW, RMSprop, Adagrad, not LBFGS"
    )
    assert not (tmp_path / "results").exists()
