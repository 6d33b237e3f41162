"""A results folder belongs to sgdbench (DESIGN §6): nothing lost, nothing mixed silently.

The tool deletes only files it can prove it wrote, refuses folders that are not its own,
replaces a forced run only once the new one is committed, keeps grid versions apart, and
turns a corrupt results file into one line and exit 2 with nothing changed on disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.helpers import cli, cli_forked

GRID = """
name = "folder"
[problem]
name = "linear"
n_samples = {n_samples}
n_features = 2
[train]
steps = {steps}
target_loss = 0.5
eval_every = 5
[grid]
lr = {lrs}
batch_size = 4
"""


def grid_text(n_samples: int = 64, steps: int = 20, lrs: str = "[0.01, 0.02, 0.03]") -> str:
    return GRID.format(n_samples=n_samples, steps=steps, lrs=lrs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A project folder with grid.toml and its finished results in out/ (copied by each test)."""
    base = tmp_path_factory.mktemp("finished")
    (base / "grid.toml").write_text(grid_text())
    done = cli("run", "grid.toml", "--out", "out", "-q", cwd=base)
    assert done.exit_code == 0, done
    return base


@pytest.fixture
def project(finished, tmp_path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(finished, work)
    return work


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def loss_digest(steps_file: Path) -> str:
    losses = pq.read_table(steps_file, columns=["loss"]).column("loss").to_numpy()
    return hashlib.sha256(np.asarray(losses, dtype="<f4").tobytes()).hexdigest()


def assert_rows_match_files(out: Path, finished: bool = True) -> pd.DataFrame:
    """Every committed row's steps file is the one it describes; once a run finished, nothing
    staged is left."""
    runs = pd.read_parquet(out / "runs.parquet")
    for rid, digest in zip(runs["run_id"], runs["loss_digest"], strict=True):
        assert loss_digest(out / "steps" / f"{rid}.parquet") == digest
    if finished:
        assert not list(out.rglob("*.staged"))
        assert not (out / ".sgdbench.commit.parquet").exists()
    return runs


# ---------------------------------------------------------------------------------------------
# data loss


def test_foreign_files_in_an_out_folder_survive_and_own_leftovers_go(project):
    out = project / "out"
    rid = pd.read_parquet(out / "runs.parquet")["run_id"][0]
    foreign = [
        out / "steps" / "notes.parquet",
        out / "evals" / "0123456789ab.parquet",
        out / ".backup.tmp",
        out / ".runs-old.parquet.99.tmp",
        out / "my-notes.txt",
    ]
    for f in foreign:
        f.write_text("mine")
    own_leftover = out / "steps" / f".{rid}.parquet.12345.tmp"
    own_leftover.write_text("half a file")
    for args in ([], ["--force"]):
        done = cli("run", "grid.toml", "--out", "out", "-q", *args, cwd=project)
        assert done.exit_code == 0, done
        assert all(f.read_text() == "mine" for f in foreign)
    assert not own_leftover.exists()
    assert_rows_match_files(out)


def test_a_folder_that_is_not_a_results_folder_is_refused_untouched(project):
    target = project / "documents"
    target.mkdir()
    (target / "thesis.tex").write_text("chapter 1")
    before = sorted(p.name for p in target.rglob("*"))
    done = cli("run", "grid.toml", "--out", "documents", "-q", cwd=project)
    assert done.exit_code == 2
    assert done.stderr.strip().count("\n") == 0
    assert "documents: not an sgdbench results folder" in done.stderr
    assert sorted(p.name for p in target.rglob("*")) == before


def test_an_empty_out_is_refused(project):
    before = sorted(p.name for p in project.iterdir())
    done = cli("run", "grid.toml", "--out", "", "-q", cwd=project)
    assert done.exit_code == 2
    assert done.stderr.strip().startswith("--out: empty folder name")
    assert sorted(p.name for p in project.iterdir()) == before


def test_a_folder_of_the_previous_version_is_adopted(project):
    out = project / "out"
    (out / ".sgdbench").unlink()
    shutil.rmtree(out / "grids")
    runs = pq.read_table(out / "runs.parquet")
    pq.write_table(runs.drop(["grid_id"]), out / "runs.parquet")
    (out / "steps" / "user.parquet").write_text("mine")
    done = cli("run", "grid.toml", "--out", "out", "-q", cwd=project)
    assert done.exit_code == 0, done
    assert "3 of 3 runs already complete" in done.stderr
    assert (out / ".sgdbench").exists() and (out / "steps" / "user.parquet").exists()
    report = cli("report", "out", "--format", "csv", cwd=project)
    assert report.exit_code == 0 and len(report.stdout.strip().splitlines()) == 4
    assert "left out" not in report.stderr


def crash(project: Path, method: str, at: int, *args: str) -> None:
    """``sgdbench run`` in a forked child whose ResultsStore.METHOD dies (like kill -9: no
    cleanup, no flush) at its ``at``-th call."""

    def patch() -> None:
        from sgdbench import store

        real, count = getattr(store.ResultsStore, method), [0]

        def crashing(self, *args, **kwargs):
            count[0] += 1
            if count[0] == at:
                os._exit(137)
            return real(self, *args, **kwargs)

        setattr(store.ResultsStore, method, crashing)

    code, stderr = cli_forked(
        "run", "grid.toml", "--out", "out", "-q", *args, cwd=project, before=patch
    )
    assert code == 137, stderr


def test_force_killed_half_way_keeps_the_runs_not_yet_redone(project):
    out = project / "out"
    before = pd.read_parquet(out / "runs.parquet").set_index("run_id")
    crash(project, "write_run_files", 3, "--force")  # two runs redone, the third never
    runs = assert_rows_match_files(out, finished=False).set_index("run_id")
    assert sorted(runs.index) == sorted(before.index)
    assert runs["loss_digest"].to_dict() == before["loss_digest"].to_dict()
    done = cli("run", "grid.toml", "--out", "out", "-q", cwd=project)
    assert done.exit_code == 0 and "3 of 3 runs already complete" in done.stderr
    assert_rows_match_files(out)


def test_a_kill_after_the_commit_journal_finishes_the_replacement_on_the_next_run(project):
    out = project / "out"
    crash(project, "_finish_replacing", 1, "--force")
    assert (out / ".sgdbench.commit.parquet").exists()
    done = cli("run", "grid.toml", "--out", "out", "-q", cwd=project)
    assert done.exit_code == 0, done
    assert len(assert_rows_match_files(out)) == 3


# ---------------------------------------------------------------------------------------------
# grids never mix silently


def test_a_grid_of_another_problem_with_the_same_name_is_refused(project):
    out = project / "out"
    (project / "other.toml").write_text(grid_text(n_samples=65))
    before = snapshot(out)
    done = cli("run", "other.toml", "--out", "out", "-q", cwd=project)
    assert done.exit_code == 2
    assert done.stderr.strip().count("\n") == 0
    assert "linear(n_samples=64)" in done.stderr and "linear(n_samples=65)" in done.stderr
    assert "--allow-new-problem" in done.stderr
    assert snapshot(out) == before
    allowed = cli("run", "other.toml", "--out", "out", "-q", "--allow-new-problem", cwd=project)
    assert allowed.exit_code == 0, allowed
    report = cli("report", "out", "--format", "csv", cwd=project)
    assert len(report.stdout.strip().splitlines()) == 1 + 3
    assert "left out 3 run(s) of older grid versions" in report.stderr
    assert (out / "grid.toml").read_text() == grid_text(n_samples=65)
    assert len(list((out / "grids").glob("*.toml"))) == 2


@pytest.mark.slow  # three grids end to end
def test_an_edited_grid_leaves_its_stale_runs_out_and_all_brings_them_back(project):
    (project / "grid.toml").write_text(grid_text(steps=30))
    assert cli("run", "grid.toml", "--out", "out", "-q", cwd=project).exit_code == 0
    report = cli("report", "out", "--format", "csv", cwd=project)
    assert report.exit_code == 0
    assert len(report.stdout.strip().splitlines()) == 1 + 3
    assert report.stderr.strip() == (
        "sgdbench: out: left out 3 run(s) of older grid versions (--all shows them)"
    )
    every = cli("report", "out", "--format", "csv", "--all", cwd=project)
    table = pd.read_csv(pd.io.common.StringIO(every.stdout))
    assert len(table) == 6 and sorted(table["train.steps"]) == [20, 20, 20, 30, 30, 30]
    assert every.stderr == ""
    for args in (["plot", "out", "-o", "p.png"], ["compare", "out", "out"]):
        done = cli(*args, cwd=project)
        assert done.exit_code == 0, done
        assert "left out 3 run(s)" in done.stderr


def test_a_grid_that_grows_keeps_its_unchanged_runs_current(project):
    (project / "grid.toml").write_text(grid_text(lrs="[0.01, 0.02, 0.03, 0.04]"))
    done = cli("run", "grid.toml", "--out", "out", "-q", cwd=project)
    assert done.exit_code == 0 and "3 of 4 runs already complete" in done.stderr
    report = cli("report", "out", "--format", "csv", cwd=project)
    assert len(report.stdout.strip().splitlines()) == 1 + 4 and "left out" not in report.stderr


# ---------------------------------------------------------------------------------------------
# corrupt or truncated files


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def first_run(out: Path) -> str:
    return pd.read_parquet(out / "runs.parquet")["run_id"][0]


CASES = {
    "report": ("runs", ["report", "out"]),
    "report-target": ("evals", ["report", "out", "--target-loss", "0.1"]),
    "plot-runs": ("runs", ["plot", "out", "-o", "p.png"]),
    "plot-steps": ("steps", ["plot", "out", "-o", "p.png"]),
    "compare": ("runs", ["compare", "out", "out"]),
    "run": ("runs", ["run", "grid.toml", "--out", "out", "-q"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_corrupt_results_file_is_one_line_and_changes_nothing(project, case):
    which, args = CASES[case]
    out = project / "out"
    rid = first_run(out)
    path = out / "runs.parquet" if which == "runs" else out / which / f"{rid}.parquet"
    truncate(path)
    before = snapshot(project)
    done = cli(*args, cwd=project)
    assert done.exit_code == 2, done
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith(f"{path.relative_to(project)}: unreadable results file")
    assert snapshot(project) == before
