"""``sgdbench.load`` / ``load_evals``: tidy tables with the run's axes, and the README's pandas,
polars and DuckDB snippets give the same rows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sgdbench
from sgdbench.errors import UsageError
from tests.helpers import REPO
from tests.report_results import results


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results("seeds", tmp_path_factory)


def test_load_joins_each_step_to_its_run(seeds: Path) -> None:
    steps = sgdbench.load(seeds)
    raw = pd.read_parquet(seeds / "steps")
    runs = pd.read_parquet(seeds / "runs.parquet")
    assert len(steps) == len(raw)
    assert {"lr", "seed", "optimizer", "batch_size", "status", "step_lr", "loss"} <= set(steps)
    # every row carries its own run's axes (not a neighbour's)
    by_run = runs.set_index("run_id")
    for rid, g in steps.groupby("run_id"):
        assert (g["seed"] == by_run.loc[rid, "seed"]).all()
        assert (g["lr"] == by_run.loc[rid, "lr"]).all()
        np.testing.assert_array_equal(
            g.sort_values("step")["loss"].to_numpy(),
            raw[raw["run_id"] == rid].sort_values("step")["loss"].to_numpy(),
        )
    assert steps["batch_size"].dtype.kind == "i"
    only = runs["run_id"].iloc[0]
    assert set(sgdbench.load(seeds, runs=[only])["run_id"]) == {only}


def test_load_evals_has_axes_and_every_evaluation(seeds: Path) -> None:
    evals = sgdbench.load_evals(seeds)
    assert len(evals) == len(pd.read_parquet(seeds / "evals"))
    assert {"lr", "seed", "train_loss", "val_loss"} <= set(evals)
    assert evals.groupby("run_id")["seed"].nunique().max() == 1


def test_non_run_axes_come_from_the_stored_axes(tmp_path: Path) -> None:
    from tests.helpers import cli

    grid = tmp_path / "g.toml"
    grid.write_text(
        'name = "g"\n[problem]\nname = "quadratic"\n[train]\nsteps = 3\ninit = [-1.5]\n'
        '[grid]\noptimizer = "sgd"\nlr = 0.1\nmomentum = [0.0, 0.9]\nbatch_size = "full"\n'
    )
    assert cli("run", grid, "--out", tmp_path / "g", "-q").exit_code == 0
    steps = sgdbench.load(tmp_path / "g")
    assert sorted(steps["momentum"].unique()) == [0.0, 0.9]
    assert steps.groupby("momentum").size().tolist() == [3, 3]


def test_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no runs\.parquet"):
        sgdbench.load(tmp_path)


def _readme_snippets() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("#### In Python, polars or SQL", 1)[1].split("\n#", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.parametrize(
    "index",
    [0, 1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)],
    ids=["sgdbench", "pandas", "polars", "duckdb"],  # polars and duckdb: heavy imports
)
def test_readme_snippets_read_the_same_rows(seeds: Path, index: int) -> None:
    snippets = _readme_snippets()
    assert len(snippets) == 4
    code = snippets[index].replace("results/quickstart", str(seeds))
    scope: dict[str, object] = {}
    exec(compile(code, f"README snippet {index}", "exec"), scope)
    steps = scope["steps"]
    if not isinstance(steps, pd.DataFrame):
        steps = steps.to_pandas()  # polars
    expected = sgdbench.load(seeds)
    assert len(steps) == len(expected)
    assert {"optimizer", "lr", "seed", "step_lr", "loss", "step"} <= set(steps)
    key = ["run_id", "step"]
    mine = steps.sort_values(key)[[*key, "lr", "seed", "loss"]].reset_index(drop=True)
    theirs = expected.sort_values(key)[[*key, "lr", "seed", "loss"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, theirs, check_dtype=False)
