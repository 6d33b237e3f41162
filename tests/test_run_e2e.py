"""`sgdbench run` end to end: results on disk, skip/force, dry run, list."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sgdbench.store import RUN_SCHEMA
from tests.helpers import REPO, cli

GRID = """
name = "tiny"
[problem]
name = "linear"
n_samples = 50
n_features = 3
noise = 0.1
[train]
epochs = 3
target_loss = 0.5
eval_every = 5
[grid]
optimizer = ["sgd", "adam"]
lr = [0.05]
batch_size = [8, "full"]
seed = [0, 1]
"""

DESIGN_RUN_COLUMNS = [
    "run_id",
    "name",
    "problem",
    "optimizer",
    "optimizer_kwargs",
    "lr",
    "batch_size",
    "device",
    "seed",
    "engine",
    "status",
    "message",
    "steps",
    "epochs",
    "final_loss",
    "best_loss",
    "steps_to_target",
    "samples_to_target",
    "time_to_target_s",
    "steps_per_s",
    "samples_per_s",
    "train_time_s",
    "wall_time_s",
    "loss_digest",
    "torch_version",
    "device_name",
    "threads",
    "git_sha",
    "started_at",
]


@pytest.fixture
def ran(tmp_path, write_grid):
    write_grid(GRID)
    result = cli("run", "grid.toml", "-q", cwd=tmp_path)
    assert result.exit_code == 0, result
    return tmp_path / "results" / "tiny", result


def test_results_layout_and_columns(ran):
    out, result = ran
    assert "8 run(s)" in result.stderr and "8 ok" in result.stderr
    for name in ("runs.parquet", "grid.toml", "env.json"):
        assert (out / name).is_file()
    runs = pd.read_parquet(out / "runs.parquet")
    assert list(runs.columns[: len(DESIGN_RUN_COLUMNS)]) == DESIGN_RUN_COLUMNS
    assert list(runs.columns) == RUN_SCHEMA.names
    assert len(runs) == 8 and set(runs["status"]) == {"ok"}
    assert sorted(runs["batch_size"].unique()) == [8, 50]  # "full" is the dataset size
    env = json.loads((out / "env.json").read_text())
    assert env["torch_version"] == runs["torch_version"].iloc[0]
    assert (out / "grid.toml").read_text() == (out.parents[1] / "grid.toml").read_text()


def test_every_step_is_in_the_steps_dataset(ran):
    out, _ = ran
    runs = pd.read_parquet(out / "runs.parquet").set_index("run_id")
    steps = pd.read_parquet(out / "steps")
    assert list(steps.columns) == [
        "run_id",
        "step",
        "epoch",
        "samples_seen",
        "loss",
        "lr",
        "time_s",
    ]
    assert steps.groupby("run_id").size().to_dict() == runs["steps"].to_dict()
    minibatch = steps[steps["run_id"] == runs.index[runs["batch_size"] == 8][0]]
    assert len(minibatch) == 21  # ceil(50/8) = 7 steps per epoch, 3 epochs
    assert minibatch["step"].tolist() == list(range(21))
    assert minibatch["epoch"].tolist() == [s // 7 for s in range(21)]
    # samples seen includes the short last batch of each epoch (50 = 6*8 + 2)
    assert minibatch["samples_seen"].tolist()[5:8] == [48, 50, 58]
    assert np.all(np.diff(minibatch["time_s"]) > 0)
    assert (minibatch["lr"] == 0.05).all()


def test_evaluations_and_convergence_numbers_agree(ran):
    out, _ = ran
    runs = pd.read_parquet(out / "runs.parquet")
    evals = pd.read_parquet(out / "evals")
    for _, run in runs.iterrows():
        ev = evals[evals["run_id"] == run["run_id"]].sort_values("step")
        assert ev["step"].iloc[0] == 0 and ev["step"].iloc[-1] == run["steps"]
        assert run["final_loss"] == ev["train_loss"].iloc[-1]
        assert run["best_loss"] == ev["train_loss"].min()
        hit = ev[ev["train_loss"] <= 0.5]
        if hit.empty:
            assert pd.isna(run["steps_to_target"])
        else:
            # Exact to the step: after the last evaluation above target, at or before the first
            # at or below it (the window between them is replayed to find the step).
            first_hit = hit["step"].iloc[0]
            before = ev[ev["step"] < first_hit]["step"]
            previous = before.iloc[-1] if len(before) else -1
            assert previous < run["steps_to_target"] <= first_hit
            assert run["samples_to_target"] <= hit["samples_seen"].iloc[0]
            assert run["time_to_target_s"] <= hit["time_s"].iloc[0]
    assert runs["steps_to_target"].notna().any()
    assert runs["steps_per_s"].gt(0).all()


def test_rerun_skips_completed_and_force_reruns(ran, tmp_path):
    out, _ = ran
    before = pd.read_parquet(out / "runs.parquet")
    again = cli("run", "grid.toml", "-q", cwd=tmp_path)
    assert again.exit_code == 0
    assert "8 of 8 runs already complete, skipped" in again.stderr
    assert (
        pd.read_parquet(out / "runs.parquet")["started_at"].tolist()
        == before["started_at"].tolist()
    )
    forced = cli("run", "grid.toml", "-q", "--force", cwd=tmp_path)
    assert forced.exit_code == 0 and "8 run(s)" in forced.stderr
    after = pd.read_parquet(out / "runs.parquet")
    assert len(after) == 8
    assert sorted(after["loss_digest"]) == sorted(before["loss_digest"])


def test_dry_run_writes_nothing(tmp_path, write_grid):
    write_grid(GRID)
    result = cli("run", "grid.toml", "--dry-run", cwd=tmp_path)
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["run_id", "optimizer", "batch_size", "seed"]
    assert len(lines) == 1 + 8
    assert "8 run(s)" in result.stderr
    assert not (tmp_path / "results").exists()


def test_out_overrides_the_folder(tmp_path, write_grid):
    write_grid(
        GRID.replace("lr = [0.05]", 'lr = [0.05]\noptimizer = "sgd"', 1).replace(
            'optimizer = ["sgd", "adam"]\n', ""
        )
    )
    result = cli("run", "grid.toml", "--out", "elsewhere", "-q", cwd=tmp_path)
    assert result.exit_code == 0
    assert len(pd.read_parquet(tmp_path / "elsewhere" / "runs.parquet")) == 4
    assert not (tmp_path / "results").exists()


def test_list_problems_and_optimizers():
    problems = cli("list", "problems")
    assert problems.exit_code == 0
    for name in (
        "linear",
        "quadratic",
        "rosenbrock",
        "noisy_quadratic",
        "logistic",
        "digits",
        "file",
    ):
        assert f"\n{name}: " in "\n" + problems.stdout
    assert "n_samples [int, default 1000]" in problems.stdout
    optimizers = cli("list", "optimizers")
    assert "SGD: momentum=0, dampening=0" in optimizers.stdout
    assert "preset momentum: SGD(momentum=0.9)" in optimizers.stdout


def test_help_does_not_import_torch():
    code = (
        "import sys, sgdbench.cli\n"
        "try:\n    sgdbench.cli.app(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'pandas' not in sys.modules, 'pandas imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "sgdbench run" in done.stdout
