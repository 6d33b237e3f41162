"""Crash safety, checkpoint resume, the results lock, Ctrl-C, write failures."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from sgdbench import checkpoint
from sgdbench.engine import eager
from sgdbench.metrics import loss_digest
from sgdbench.plan import load_grid
from tests.helpers import REPO, cli, cli_forked, wait_until

pytestmark = pytest.mark.slow

DROPOUT_PLUGIN = """
import torch
from sgdbench import Problem
def make():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 4, generator=g)
    y = X @ torch.tensor([1.0, -1.0, 0.5, 2.0])
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                torch.nn.Linear(16, 1))
    return Problem(model, lambda o, t: ((o.squeeze(-1) - t) ** 2).mean(), X, y)
"""

RESUME_GRID = """
name = "resume"
[problem]
name = "dropout_plugin:make"
[train]
steps = 700
checkpoint_every = 100
schedule = "cosine"
eval_every = 50
[grid]
optimizer = ["momentum", "adam"]
lr = 0.01
batch_size = 8
"""


@pytest.fixture
def resume_specs(tmp_path):
    (tmp_path / "dropout_plugin.py").write_text(DROPOUT_PLUGIN)
    (tmp_path / "grid.toml").write_text(RESUME_GRID)
    grid = load_grid(tmp_path / "grid.toml")
    ckpt = str(tmp_path / "ckpt")
    return [dataclasses.replace(s, checkpoint_dir=ckpt) for s in grid.runs]


class StopAfter:
    def __init__(self, windows: int) -> None:
        self.left = windows

    def __call__(self) -> bool:
        self.left -= 1
        return self.left < 0


@pytest.mark.parametrize("index", [0, 1], ids=["sgd-momentum", "adam"])
def test_resume_into_fresh_objects_is_bitwise_identical(resume_specs, index):
    spec = resume_specs[index]
    uninterrupted = eager.run(dataclasses.replace(spec, checkpoint_every=0))
    assert uninterrupted.status == "ok" and uninterrupted.steps == 700

    with pytest.raises(eager.StopRequested):
        eager.run(spec, should_stop=StopAfter(windows=5))
    saved = torch.load(checkpoint.path_for(spec), weights_only=True)
    assert 0 < saved["step"] < 700
    # Momentum buffers / Adam moments are in the checkpoint: the optimizer's state matters.
    assert saved["optimizer"]["state"], "optimizer state missing from the checkpoint"

    resumed = eager.run(spec)  # builds a new problem, model, optimizer and scheduler
    assert resumed.info["resumed_from_step"] == saved["step"]
    assert resumed.steps == 700
    assert loss_digest(resumed.losses) == loss_digest(uninterrupted.losses)
    assert resumed.evals["train_loss"] == uninterrupted.evals["train_loss"]
    assert resumed.evals["step"] == uninterrupted.evals["step"]


def test_resuming_without_the_optimizer_state_would_differ(resume_specs):
    """The state_dict lesson: model state alone is not enough to continue Adam."""
    spec = resume_specs[1]
    uninterrupted = eager.run(dataclasses.replace(spec, checkpoint_every=0))
    with pytest.raises(eager.StopRequested):
        eager.run(spec, should_stop=StopAfter(windows=5))
    path = checkpoint.path_for(spec)
    state = torch.load(path, weights_only=True)
    state["optimizer"]["state"] = {}
    torch.save(state, path)
    crippled = eager.run(spec)
    assert crippled.info["resumed_from_step"] == state["step"]
    assert loss_digest(crippled.losses) != loss_digest(uninterrupted.losses)


def test_a_checkpoint_of_another_spec_or_schema_is_ignored(resume_specs):
    a, b = resume_specs
    with pytest.raises(eager.StopRequested):
        eager.run(a, should_stop=StopAfter(windows=3))
    os.replace(checkpoint.path_for(a), checkpoint.path_for(b))
    assert checkpoint.load(b) is None
    state = torch.load(checkpoint.path_for(b), weights_only=True)
    state.update(run_id=b.run_id, spec=checkpoint._identity(b), schema_version=-1)
    torch.save(state, checkpoint.path_for(b))
    assert checkpoint.load(b) is None
    assert "resumed_from_step" not in eager.run(b).info


def test_checkpoints_never_unpickle_arbitrary_objects(resume_specs, tmp_path):
    spec = resume_specs[0]
    path = checkpoint.path_for(spec)
    path.parent.mkdir(parents=True)
    marker = tmp_path / "executed"
    torch.save({"run_id": spec.run_id, "payload": _Evil(str(marker))}, path)
    assert checkpoint.load(spec) is None
    assert not marker.exists()


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


# --- real processes --------------------------------------------------------------------------

LONG_GRID = """
name = "long"
[problem]
name = "linear"
n_samples = 256
n_features = 8
[train]
steps = 20000
checkpoint_every = 1000
eval_every = 1000
[grid]
optimizer = "adam"
lr = 0.001
batch_size = 4
"""


def start(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "sgdbench", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, timeout: float = 120.0) -> None:
    wait_until(predicate, timeout)


def reference_digests(tmp_path: Path, grid: str) -> dict[str, str]:
    """The loss digests of an uninterrupted run (in-process: nothing here is killed)."""
    ref = tmp_path / "reference"
    ref.mkdir(exist_ok=True)
    (ref / "grid.toml").write_text(grid)
    done = cli("run", "grid.toml", "--out", "out", "-q", cwd=ref)
    assert done.exit_code == 0, done
    return (
        pd.read_parquet(ref / "out" / "runs.parquet").set_index("run_id")["loss_digest"].to_dict()
    )


def signal_at_checkpoint(name: str, at: int):
    """A patch for a forked CLI: once checkpoint.save has written its ``at``-th checkpoint, the
    process sends itself a real signal ``name``. The signal lands at a known step, however loaded
    the machine is, so the runs can be short."""

    def patch() -> None:
        real_save, count = checkpoint.save, [0]

        def save(spec, state):
            real_save(spec, state)
            count[0] += 1
            if count[0] == at:
                os.kill(os.getpid(), getattr(signal, name))

        checkpoint.save = save

    return patch


def test_kill_9_inside_a_run_resumes_from_its_checkpoint(tmp_path):
    grid = LONG_GRID.replace("steps = 20000", "steps = 3000").replace("= 1000", "= 500")
    expected = reference_digests(tmp_path, grid)
    work = tmp_path / "work"
    work.mkdir()
    (work / "grid.toml").write_text(grid)
    # SIGKILL right after the second checkpoint (step 1000): well inside the run
    code, _ = cli_forked(
        "run",
        "grid.toml",
        "--out",
        "out",
        "-q",
        cwd=work,
        before=signal_at_checkpoint("SIGKILL", 2),
    )
    assert code == -signal.SIGKILL
    ckpt = work / "out" / "checkpoints"
    assert len(list(ckpt.glob("*.pt"))) == 1
    assert not (work / "out" / "runs.parquet").exists()  # killed mid-run: nothing committed
    done = cli("run", "grid.toml", "--out", "out", "-q", cwd=work)
    assert done.exit_code == 0, done
    runs = pd.read_parquet(work / "out" / "runs.parquet")
    assert runs["resumed_from_step"].item() == 1000
    assert runs.set_index("run_id")["loss_digest"].to_dict() == expected
    assert len(pd.read_parquet(work / "out" / "steps")) == 3000
    assert not list(ckpt.glob("*.pt"))  # removed once the run committed


CRASH_GRID = """
name = "crash"
[problem]
name = "linear"
n_samples = 40
n_features = 2
[train]
steps = 30
[grid]
lr = [0.01, 0.02, 0.03]
batch_size = 4
"""


def crash_at_rename(cwd: Path, rename: int, *args: str) -> int | None:
    """Run ``sgdbench ARGS`` in a forked child that dies (like kill -9: no cleanup, no flush)
    just before its ``rename``-th os.replace: the temporary of that write is complete on disk, the
    real file is not there yet. Returns the child's exit code."""

    def patch() -> None:
        real_replace, count = os.replace, [0]

        def replace(src, dst):
            count[0] += 1
            if count[0] == rename:
                os._exit(137)
            real_replace(src, dst)

        os.replace = replace

    return cli_forked(*args, cwd=cwd, before=patch)[0]


@pytest.fixture(scope="module")
def crash_reference(tmp_path_factory) -> dict[str, str]:
    return reference_digests(tmp_path_factory.mktemp("crash"), CRASH_GRID)


@pytest.mark.parametrize("rename", [1, 2, 3, 5, 7, 9, 11])
def test_killed_during_a_write_leaves_a_consistent_folder_and_a_rerun_finishes(
    tmp_path, rename, crash_reference
):
    # Renames: 1 .sgdbench, 2 grids/<version>.toml, 3 grid.toml, 4 env.json, then per run its
    # steps and evals files, and runs.parquet once the rows are committed (batched: 11).
    expected = crash_reference
    work = tmp_path / "work"
    work.mkdir()
    (work / "grid.toml").write_text(CRASH_GRID)
    assert crash_at_rename(work, rename, "run", "grid.toml", "--out", "out", "-q") == 137
    out = work / "out"
    committed = set()
    if (out / "runs.parquet").exists():
        runs = pd.read_parquet(out / "runs.parquet")
        committed = set(runs["run_id"])
        steps = pd.read_parquet(out / "steps")
        # every committed run has all its steps; a step file written just before the kill may
        # exist without its row (an orphan the next run removes)
        steps = steps[steps["run_id"].isin(committed)]
        assert (
            steps.groupby("run_id").size().to_dict() == runs.set_index("run_id")["steps"].to_dict()
        )
    done = cli("run", "grid.toml", "--out", "out", "-q", cwd=work)  # the rerun: in-process
    assert done.exit_code == 0, done
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 3 and runs["run_id"].is_unique
    assert runs.set_index("run_id")["loss_digest"].to_dict() == expected
    assert sorted(p.stem for p in (out / "steps").iterdir()) == sorted(expected)
    assert not [p for p in out.rglob(".*.tmp")]


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    (tmp_path / "grid.toml").write_text(LONG_GRID)
    proc = start(["run", "grid.toml", "--out", "out", "-q"], tmp_path)
    try:
        wait_for(
            lambda: (
                (tmp_path / "out" / ".lock").exists()
                and (tmp_path / "out" / ".lock").read_text().startswith("pid")
            )
        )
        # from this (the pytest) process: another process than the lock's owner
        second = cli("run", "grid.toml", "--out", "out", "-q", cwd=tmp_path)
        assert second.exit_code == 2
        assert f"in use by pid {proc.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        proc.kill()
        proc.wait()
    # The kernel dropped the dead owner's lock: the next run takes over the stale lock file.
    assert (tmp_path / "out" / ".lock").read_text().startswith(f"pid {proc.pid}")
    (tmp_path / "small.toml").write_text(CRASH_GRID)
    third = cli("run", "small.toml", "--out", "out", "-q", "--allow-new-problem", cwd=tmp_path)
    assert third.exit_code == 0, third


def test_ctrl_c_keeps_finished_runs_and_exits_130(tmp_path):
    # 300 steps a run, a checkpoint every 50: run 1 saves 5, so the 7th is run 2's at step 100
    grid = CRASH_GRID.replace("steps = 30", "steps = 300\ncheckpoint_every = 50")
    (tmp_path / "grid.toml").write_text(grid)
    code, stderr = cli_forked(
        "run",
        "grid.toml",
        "--out",
        "out",
        "-q",
        cwd=tmp_path,
        before=signal_at_checkpoint("SIGINT", 7),
    )
    assert code == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    runs_file = tmp_path / "out" / "runs.parquet"
    finished = pd.read_parquet(runs_file)
    assert len(finished) == 1 and set(finished["status"]) == {"ok"}
    # the interrupted run left a checkpoint at the window where it stopped
    (saved,) = (tmp_path / "out" / "checkpoints").glob("*.pt")
    assert 100 <= torch.load(saved, weights_only=True)["step"] < 300
    done = cli("run", "grid.toml", "--out", "out", "-q", cwd=tmp_path)
    assert done.exit_code == 0, done
    runs = pd.read_parquet(runs_file)
    assert len(runs) == 3 and runs["resumed_from_step"].notna().sum() == 1


def test_a_full_disk_is_a_clear_error_and_keeps_earlier_results(tmp_path):
    (tmp_path / "grid.toml").write_text(CRASH_GRID)
    first = cli("run", "grid.toml", "--out", "out", "-q", cwd=tmp_path)
    assert first.exit_code == 0
    before = (tmp_path / "out" / "runs.parquet").read_bytes()
    bigger = CRASH_GRID.replace("steps = 30", "steps = 5000")
    (tmp_path / "grid.toml").write_text(bigger)

    # RLIMIT_FSIZE makes writes past 48 KiB fail with EFBIG, as a full disk fails with ENOSPC.
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, 48 * 1024))

    code, stderr = cli_forked("run", "grid.toml", "--out", "out", "-q", cwd=tmp_path, before=limit)
    assert code == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write results" in lines[0], stderr
    assert (tmp_path / "out" / "runs.parquet").read_bytes() == before


def test_keep_checkpoints_and_save_model(tmp_path):
    grid = CRASH_GRID.replace(
        "steps = 30",
        "steps = 30\ncheckpoint_every = 10\nkeep_checkpoints = true\nsave_model = true",
    )
    (tmp_path / "grid.toml").write_text(textwrap.dedent(grid))
    assert cli("run", "grid.toml", "--out", "out", "-q", cwd=tmp_path).exit_code == 0
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    for run_id in runs["run_id"]:
        assert (tmp_path / "out" / "checkpoints" / f"{run_id}.pt").is_file()
        state = torch.load(tmp_path / "out" / "models" / f"{run_id}.pt", weights_only=True)
        assert set(state) == {"weight", "bias"} and state["weight"].shape == (1, 2)


def test_rows_are_committed_in_batches_and_checkpoints_removed_only_after(tmp_path):
    from sgdbench.runner import PendingRows
    from sgdbench.store import ResultsStore

    (tmp_path / "grid.toml").write_text(
        CRASH_GRID.replace("steps = 30", "steps = 30\ncheckpoint_every = 10")
    )
    grid = load_grid(tmp_path / "grid.toml")
    store = ResultsStore(tmp_path / "out")
    store.create()
    pending = PendingRows(store, every_s=3600, max_rows=2)
    specs = [dataclasses.replace(s, checkpoint_dir=str(tmp_path / "ckpt")) for s in grid.runs]
    for spec in specs:
        checkpoint.path_for(spec).parent.mkdir(exist_ok=True)
        checkpoint.path_for(spec).write_bytes(b"a checkpoint")
    trajectories = [eager.run(dataclasses.replace(s, checkpoint_every=0)) for s in specs]
    pending.add(specs[0], store.write_run_files(specs[0], trajectories[0], None))
    assert not store.runs_path.exists() and checkpoint.path_for(specs[0]).exists()
    pending.add(specs[1], store.write_run_files(specs[1], trajectories[1], None))  # max_rows
    assert len(pd.read_parquet(store.runs_path)) == 2
    assert not checkpoint.path_for(specs[0]).exists() and not checkpoint.path_for(specs[1]).exists()
    pending.add(specs[2], store.write_run_files(specs[2], trajectories[2], None))
    assert checkpoint.path_for(specs[2]).exists()
    pending.flush()
    assert len(pd.read_parquet(store.runs_path)) == 3 and not checkpoint.path_for(specs[2]).exists()


# --- resume edge cases found in review -------------------------------------------------------


def _spec(tmp_path: Path, text: str):
    (tmp_path / "edge.toml").write_text(textwrap.dedent(text))
    (spec,) = load_grid(tmp_path / "edge.toml").runs
    return dataclasses.replace(spec, checkpoint_dir=str(tmp_path / "ckpt"))


def test_resume_keeps_the_early_stopping_count(tmp_path):
    spec = _spec(
        tmp_path,
        """
        [problem]
        name = "digits"
        model = "mlp"
        hidden = [64]
        val_fraction = 0.7
        [train]
        epochs = 60
        checkpoint_every = 20
        early_stopping = {patience = 3}
        [grid]
        optimizer = "adam"
        lr = 0.01
        batch_size = 64
    """,
    )
    whole = eager.run(dataclasses.replace(spec, checkpoint_every=0))
    assert "early stopping" in whole.message
    checkpoints = [s for s in range(20, whole.steps, 20)]
    stop_at = len([e for e in eager.window_ends(spec, 10, 20) if e <= checkpoints[-1]])
    with pytest.raises(eager.StopRequested):
        eager.run(spec, should_stop=StopAfter(windows=stop_at - 1))
    resumed = eager.run(spec)
    assert resumed.info["resumed_from_step"] > 0
    assert resumed.steps == whole.steps and resumed.message == whole.message
    assert loss_digest(resumed.losses) == loss_digest(whole.losses)


def test_resume_within_the_last_steps_keeps_the_update_cosine(tmp_path):
    spec = _spec(
        tmp_path,
        """
        [problem]
        name = "linear"
        n_samples = 64
        [train]
        steps = 40
        checkpoint_every = 5
        [grid]
        optimizer = "momentum"
        lr = 0.05
        batch_size = 8
    """,
    )
    whole = eager.run(dataclasses.replace(spec, checkpoint_every=0))
    ends = eager.window_ends(spec, 10, 5)
    with pytest.raises(eager.StopRequested):  # stop at the window ending at step 35
        eager.run(spec, should_stop=StopAfter(windows=ends.index(35)))
    resumed = eager.run(spec)
    assert resumed.info["resumed_from_step"] == 35
    assert loss_digest(resumed.losses) == loss_digest(whole.losses)
    assert resumed.info["update_cosine"] == whole.info["update_cosine"]


def test_ctrl_c_at_the_final_window_keeps_the_finished_run(tmp_path):
    spec = _spec(
        tmp_path,
        """
        [problem]
        name = "quadratic"
        [train]
        steps = 20
        init = [1.0]
        checkpoint_every = 5
        [grid]
        lr = 0.1
    """,
    )
    n_windows = len(eager.window_ends(spec, eager.WARMUP_STEPS, 5))
    calls: list[int] = []

    def stop_at_the_last_window() -> bool:
        calls.append(1)
        return len(calls) == n_windows

    traj = eager.run(spec, should_stop=stop_at_the_last_window)
    assert len(calls) == n_windows  # asked at the final window too
    assert traj.status == "ok" and traj.steps == 20


def test_checkpointing_does_not_change_where_a_diverged_run_stops(tmp_path):
    text = """
        [problem]
        name = "linear"
        n_samples = 64
        [train]
        steps = 600
        {extra}
        [grid]
        lr = 3.0
        batch_size = 8
    """
    plain = _spec(tmp_path, text.format(extra=""))
    (tmp_path / "b").mkdir()
    checkpointed = _spec(tmp_path / "b", text.format(extra="checkpoint_every = 7"))
    assert plain.run_id == checkpointed.run_id
    a, b = eager.run(plain), eager.run(checkpointed)
    assert a.status == b.status == "diverged"
    assert (a.steps, a.message) == (b.steps, b.message)
    assert loss_digest(a.losses) == loss_digest(b.losses)


def test_finished_rows_are_committed_while_the_next_run_trains(tmp_path):
    from sgdbench.runner import PendingRows
    from sgdbench.store import ResultsStore

    (tmp_path / "grid.toml").write_text(CRASH_GRID)
    spec = load_grid(tmp_path / "grid.toml").runs[0]
    store = ResultsStore(tmp_path / "out")
    store.create()
    pending = PendingRows(store, every_s=0.2)
    pending.add(spec, store.write_run_files(spec, eager.run(spec), None))
    # no further run arrives: the timer commits on its own (waited for, not slept through)
    wait_until(store.runs_path.exists, 60, "the timer's commit of runs.parquet")
    assert pd.read_parquet(store.runs_path)["run_id"].tolist() == [spec.run_id]


def test_force_keeps_the_old_rows_until_the_new_runs_commit(tmp_path, crash_reference):
    (tmp_path / "grid.toml").write_text(CRASH_GRID)
    assert cli("run", "grid.toml", "--out", "out", "-q", cwd=tmp_path).exit_code == 0
    # renames: .sgdbench, grid.toml, env.json, then run 1's staged steps
    args = ("run", "grid.toml", "--out", "out", "-q", "--force")
    assert crash_at_rename(tmp_path, 4, *args) == 137
    kept = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert kept.set_index("run_id")["loss_digest"].to_dict() == crash_reference
    done = cli("run", "grid.toml", "--out", "out", "-q", cwd=tmp_path)
    assert done.exit_code == 0, done
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert runs.set_index("run_id")["loss_digest"].to_dict() == crash_reference
