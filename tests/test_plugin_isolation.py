"""User code enters a run only through an explicit plug-in: a module lying beside a grid never
shadows an installed package, in the driver or in worker processes; a plug-in beside its grid
still loads; a plug-in that exits is an error, not a silent success."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pandas as pd
import pytest

from sgdbench.problems import plugin
from sgdbench.problems.factory import build_problem
from tests.helpers import cli, cli_subprocess

# Modules the driver or a worker imports after the grid is loaded (or, in a spawn worker, from
# its very start): each would run planted code if the grid's folder were on sys.path.
SHADOWED = ("pyarrow", "pandas", "cloudpickle", "tqdm", "numpy", "torch")

SHADOW = """
from pathlib import Path

Path(__file__).with_suffix(".imported").write_text("shadow module executed")
"""

LINEAR_GRID = """
name = "shadowed"
[problem]
name = "linear"
n_samples = 32
n_features = 2
[train]
steps = 3
[grid]
optimizer = "sgd"
lr = [0.01, 0.1]
batch_size = 8
"""

PLUGIN = """
import torch

from sgdbench import Problem


def make(n_samples=16):
    X = torch.randn(n_samples, 2)
    y = X @ torch.tensor([1.0, -1.0])
    model = torch.nn.Linear(2, 1)
    return Problem(model=model, loss_fn=lambda out, yb: ((out[:, 0] - yb) ** 2).mean(), X=X, y=y)
"""


def plant_shadows(folder: Path) -> None:
    for name in SHADOWED:
        (folder / f"{name}.py").write_text(SHADOW)


def executed_shadows(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.imported"))


@pytest.mark.slow  # a fresh interpreter (and, with --jobs 2, two workers)
@pytest.mark.parametrize(
    "jobs", [[], ["--jobs", "2", "--always-parallel"]], ids=["serial", "jobs2"]
)
def test_modules_beside_a_builtin_problem_grid_are_not_imported(tmp_path, jobs):
    grid_dir = tmp_path / "grids"
    grid_dir.mkdir()
    (grid_dir / "grid.toml").write_text(LINEAR_GRID)
    plant_shadows(grid_dir)
    # Not run from the grid's folder: `python -m` puts the working directory on sys.path itself.
    result = cli_subprocess(
        "run", grid_dir / "grid.toml", "--out", tmp_path / "out", "-q", *jobs, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert executed_shadows(grid_dir) == []
    assert len(pd.read_parquet(tmp_path / "out" / "runs.parquet")) == 2


@pytest.mark.slow  # a fresh interpreter (and, with --jobs 2, two workers)
@pytest.mark.parametrize(
    "jobs", [[], ["--jobs", "2", "--always-parallel"]], ids=["serial", "jobs2"]
)
def test_plugin_beside_its_grid_loads_and_shadows_nothing(tmp_path, jobs):
    grid_dir = tmp_path / "grids"
    grid_dir.mkdir()
    module = f"beside_{uuid.uuid4().hex[:8]}"
    (grid_dir / f"{module}.py").write_text(PLUGIN)
    (grid_dir / "grid.toml").write_text(
        LINEAR_GRID.replace(
            'name = "linear"\nn_samples = 32\nn_features = 2', f'name = "{module}:make"'
        )
    )
    plant_shadows(grid_dir)
    result = cli_subprocess(
        "run", grid_dir / "grid.toml", "--out", tmp_path / "out", "-q", *jobs, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert sorted(runs["status"]) == ["ok", "ok"]
    assert set(runs["problem"]) == {f"{module}:make"}
    assert executed_shadows(grid_dir) == []


def test_plugin_package_beside_the_grid_imports_its_submodules(tmp_path):
    package = f"pkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / package / "problems").mkdir(parents=True)
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "problems" / "__init__.py").write_text("from .data import make\n")
    (tmp_path / package / "problems" / "data.py").write_text(PLUGIN)
    problem = build_problem(f"{package}.problems:make", {"n_samples": 5}, 0, str(tmp_path))
    assert problem.n_samples == 5


def test_each_grid_folder_gets_its_own_plugin_module(tmp_path):
    """One process, two grids, one module name: the second grid must not get the first's code."""
    module = f"twin_{uuid.uuid4().hex[:8]}"
    for size in (3, 7):
        folder = tmp_path / f"grid{size}"
        folder.mkdir()
        (folder / f"{module}.py").write_text(PLUGIN.replace("n_samples=16", f"n_samples={size}"))
    for size in (3, 7, 3):
        problem = build_problem(f"{module}:make", {}, 0, str(tmp_path / f"grid{size}"))
        assert problem.n_samples == size


def test_an_installed_module_wins_over_one_beside_the_grid(tmp_path):
    (tmp_path / "json.py").write_text(SHADOW)
    assert plugin.import_module("json", str(tmp_path)).__name__ == "json"
    assert executed_shadows(tmp_path) == []


def test_a_missing_plugin_says_where_it_was_looked_for(tmp_path):
    with pytest.raises(ModuleNotFoundError, match=r"neither installed nor beside the grid"):
        plugin.builder(f"absent_{uuid.uuid4().hex[:8]}:make", str(tmp_path))


EXITING = {
    "exit-on-import": "import sys\nsys.exit(0)\n",
    "exit-in-builder": "import sys\n\ndef make():\n    sys.exit(3)\n",
    "base-exception": "class Bail(BaseException):\n    pass\n\ndef make():\n    raise Bail()\n",
}


@pytest.mark.parametrize("body", list(EXITING.values()), ids=list(EXITING))
def test_a_plugin_that_exits_is_a_one_line_grid_error(tmp_path, body):
    module = f"exiting_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(body)
    (tmp_path / "grid.toml").write_text(
        LINEAR_GRID.replace(
            'name = "linear"\nn_samples = 32\nn_features = 2', f'name = "{module}:make"'
        )
    )
    result = cli("run", "grid.toml", "--out", tmp_path / "out", cwd=tmp_path)
    assert result.exit_code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"grid.toml: problem.name: cannot import plug-in '{module}:make'")
    assert "sys.exit" in lines[0] or "Bail" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # two worker processes
def test_a_plugin_that_exits_in_a_worker_fails_that_run(tmp_path):
    """Validation builds the problem in the driver only; a worker that hits sys.exit() while
    building records a failed run instead of passing for a finished one."""
    module = f"exiting_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent("""
        import multiprocessing
        import sys

        """)
        + PLUGIN.replace(
            "def make(n_samples=16):",
            "def make(n_samples=16):\n"
            "    if multiprocessing.parent_process() is not None:\n"
            "        sys.exit(0)",
        )
    )
    (tmp_path / "grid.toml").write_text(
        LINEAR_GRID.replace(
            'name = "linear"\nn_samples = 32\nn_features = 2', f'name = "{module}:make"'
        )
    )
    # In-process: the workers are forked from this process as from `sgdbench run`, and the
    # plug-in (a fresh module name) is imported by the grid, so no fresh interpreter is needed.
    result = cli(
        "run", "grid.toml", "--out", "out", "-q", "--jobs", "2", "--always-parallel", cwd=tmp_path
    )
    assert result.exit_code == 1, result
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert sorted(runs["status"]) == ["failed", "failed"]
    assert all("sys.exit(0)" in m for m in runs["message"])
