"""Executors: serial, ``--jobs N`` worker processes and Dask give the same results, survive a
worker that dies mid-run, and split threads and GPUs between workers."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from sgdbench.engine.seeding import INIT, derive_seed
from sgdbench.executors import split_threads, unit_key
from sgdbench.executors.base import start_method
from sgdbench.executors.process_pool import gpu_per_worker
from tests.helpers import REPO, cli

GRID = """
name = "par"
[problem]
name = "linear"
n_samples = 96
n_features = 5
noise = 0.1
[train]
epochs = 3
[grid]
optimizer = ["sgd", "adam"]
lr = [0.01, 0.1, 0.5]
batch_size = [8]
seed = [0]
"""

# A plug-in problem whose builder kills its worker process (never the driver) for chosen runs:
# `once_seed` on the first build only (a marker file remembers), `always_seed` while `armed`
# exists. A run is recognised by its init seed, which the builder runs under.
KILLER = """
import multiprocessing
import os
from pathlib import Path

import torch

from sgdbench import Problem


def make(n_samples=64, once_seed=-1, once_marker="", always_seed=-1, armed=""):
    if multiprocessing.parent_process() is not None:  # in a worker
        seed = torch.initial_seed()
        if seed == once_seed and not Path(once_marker).exists():
            Path(once_marker).touch()
            os._exit(1)
        if seed == always_seed and Path(armed).exists():
            os._exit(1)
    X = torch.randn(n_samples, 3)
    y = X @ torch.tensor([1.0, -2.0, 0.5])
    model = torch.nn.Linear(3, 1)
    return Problem(model=model, loss_fn=lambda out, yb: ((out[:, 0] - yb) ** 2).mean(), X=X, y=y)
"""


def killer_grid(tmp_path: Path) -> tuple[Path, Path]:
    """A 4-run grid (seeds 0..3): seed 1 kills its worker once, seed 2 until disarmed."""
    (tmp_path / "killer.py").write_text(KILLER)
    armed = tmp_path / "armed"
    armed.touch()
    grid = tmp_path / "killer.toml"
    grid.write_text(
        textwrap.dedent(f"""
        name = "killer"
        [problem]
        name = "killer:make"
        once_seed = {derive_seed(1, INIT)}
        once_marker = "{tmp_path / "once"}"
        always_seed = {derive_seed(2, INIT)}
        armed = "{armed}"
        [train]
        steps = 20
        [grid]
        optimizer = "sgd"
        lr = 0.05
        batch_size = [8]
        seed = [0, 1, 2, 3]
        """)
    )
    return grid, armed


def runs(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "runs.parquet").set_index("seed").sort_index()


# --------------------------------------------------------------------------------------------
# pure logic


def test_threads_are_split_so_workers_do_not_oversubscribe() -> None:
    assert split_threads(1, 8) == 8
    assert split_threads(2, 8) == 4
    assert split_threads(3, 8) == 2  # 3 x 2 <= 8
    assert split_threads(16, 8) == 1  # never 0
    assert split_threads(2, 8, threads_per_job=3) == 3  # asked for: honoured
    with pytest.raises(ValueError):
        split_threads(2, 8, threads_per_job=0)


def test_each_worker_gets_its_own_gpu_for_plain_cuda_runs() -> None:
    assert gpu_per_worker(2, ["0", "1"], {"cuda", "cpu"}) == ["0", "1"]
    assert gpu_per_worker(3, ["4", "7"], {"cuda"}) == ["4", "7", "4"]  # more workers than GPUs
    assert gpu_per_worker(2, ["0", "1"], {"cpu"}) is None
    assert gpu_per_worker(2, [], {"cuda"}) is None
    # an explicit index means that GPU: hiding the others would break it
    assert gpu_per_worker(2, ["0", "1"], {"cuda", "cuda:1"}) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is used on Linux only")
def test_workers_are_forked_only_where_a_fork_is_safe(write_grid: Callable[..., Path]) -> None:
    from sgdbench.plan import load_grid

    specs = load_grid(write_grid(GRID)).runs  # threads = 1 (the default), cpu
    units = [[s] for s in specs]
    assert start_method(units, threads=1, gpus=None) == "fork"
    # libgomp's thread pool does not survive a fork: more than one thread -> forkserver,
    # whether the worker's threads (set first) or a run's own
    assert start_method(units, threads=4, gpus=None) == "forkserver"
    two = [[replace(s, threads=2)] for s in specs]
    assert start_method(two, threads=1, gpus=None) == "forkserver"
    auto = [[replace(s, threads="auto")] for s in specs]
    assert start_method(auto, threads=1, gpus=None) == "fork"  # auto: the workers' share
    assert start_method(auto, threads=2, gpus=None) == "forkserver"
    # CUDA must not be initialised before a fork: GPU runs never fork
    assert start_method([[replace(specs[0], device="cuda")]], 1, None) == "forkserver"
    assert start_method(units, threads=1, gpus=["0", "1"]) == "forkserver"


def test_a_one_unit_grid_runs_in_the_driver(
    write_grid: Callable[..., Path], tmp_path: Path
) -> None:
    # a stacked group is one unit however many runs it holds: no worker would run beside it
    grid = write_grid(GRID.replace('["sgd", "adam"]', '"sgd"').replace("epochs = 3", "steps = 30"))
    out = tmp_path / "out"
    result = cli("run", grid, "--out", out, "--jobs", "2", "--engine", "stacked")
    assert result.exit_code == 0, result
    assert "one unit of work (3 run(s), trained together): run in this process" in result.stderr
    table = pd.read_parquet(out / "runs.parquet")
    assert len(table) == 3 and (table["status"] == "ok").all()
    serial = tmp_path / "serial"
    assert cli("run", grid, "--out", serial, "-q", "--engine", "stacked").exit_code == 0
    assert sorted(table["loss_digest"]) == sorted(
        pd.read_parquet(serial / "runs.parquet")["loss_digest"]
    )


def test_dask_keys_name_the_runs(write_grid: Callable[..., Path]) -> None:
    from sgdbench.plan import load_grid

    specs = load_grid(write_grid(GRID)).runs
    assert unit_key(specs[:1]) == f"sgdbench-{specs[0].run_id}"
    assert unit_key(specs[:1]) == unit_key(list(specs[:1]))  # same runs, same key
    assert unit_key(specs[:3]) != unit_key(specs[:2])
    assert unit_key(specs[:3]).startswith(f"sgdbench-{specs[0].run_id}")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--executor", "serial", "--jobs", "2"], "--executor serial runs in this process"),
        (["--always-parallel"], "--executor serial runs in this process"),
        (["--executor", "process", "--scheduler", "tcp://x:1"], "--scheduler needs"),
        (["--scheduler", "tcp://x:1", "--jobs", "2"], "--jobs sizes a local Dask cluster"),
    ],
)
def test_meaningless_executor_options_are_usage_errors(
    write_grid: Callable[..., Path], args: list[str], needle: str
) -> None:
    result = cli("run", write_grid(GRID), "--dry-run", *args)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_dask_missing_is_a_one_line_error(
    write_grid: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)  # import fails
    result = cli("run", write_grid(GRID), "--out", tmp_path / "out", "--executor", "dask", "-q")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "sgdbench: --executor dask needs dask[distributed]: pip install 'sgdbench[dask]'"
    )


@pytest.mark.slow  # imports dask.distributed and waits for a connection
def test_unreachable_scheduler_is_a_one_line_error(
    write_grid: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sgdbench.executors.dask_cluster.CONNECT_TIMEOUT_S", 1)
    out = tmp_path / "out"
    result = cli("run", write_grid(GRID), "--out", out, "--scheduler", "tcp://127.0.0.1:9", "-q")
    assert result.exit_code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.stderr


# --------------------------------------------------------------------------------------------
# end to end


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One 2-worker LocalCluster for the module, used through ``--scheduler`` (the "existing
    cluster" path). Like the one sgdbench starts, it gives up on a task at the first death."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # no clash with a dashboard on :8787
        silence_logs=logging.ERROR,
        scheduler_kwargs={"allowed_failures": 0},
        env={"PYTHONPATH": str(REPO)},
    ) as local:
        yield local.scheduler_address


def read_runs(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "runs.parquet").set_index("run_id").sort_index()


@pytest.fixture(scope="module")
def serial_runs(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """GRID run serially, once for the module: what every executor must reproduce."""
    folder = tmp_path_factory.mktemp("serial")
    (folder / "grid.toml").write_text(GRID)
    result = cli("run", folder / "grid.toml", "--out", folder / "out", "-q")
    assert result.exit_code == 0, result
    serial = read_runs(folder / "out")
    assert len(serial) == 6 and (serial["status"] == "ok").all()
    assert serial["loss_digest"].nunique() == 6  # the runs really differ
    return serial


# One test per executor (the serial reference shared): each has the whole timeout to itself on
# a loaded machine, where one test running all four used to come near it.
@pytest.mark.slow
@pytest.mark.parametrize("executor", ["jobs2", "dask_local", "dask_remote"])
def test_serial_jobs_and_dask_give_bitwise_identical_losses(
    write_grid: Callable[..., Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    serial_runs: pd.DataFrame,
    executor: str,
) -> None:
    extra = {
        "jobs2": ["--jobs", "2", "--always-parallel"],
        "dask_local": [
            "--executor",
            "dask",
            "--jobs",
            "2",
            "--always-parallel",
        ],  # a LocalCluster sgdbench starts
    }.get(executor) or ["--scheduler", request.getfixturevalue("cluster")]
    out = tmp_path / executor
    result = cli("run", write_grid(GRID), "--out", out, "-q", *extra)
    assert result.exit_code == 0, result
    table = read_runs(out)
    assert list(table.index) == list(serial_runs.index)  # executors do not change run ids
    assert (table["loss_digest"] == serial_runs["loss_digest"]).all()
    assert (table["steps"] == serial_runs["steps"]).all()
    if executor != "dask_remote":
        # 2 workers on this machine's cores: each records the threads it really used
        from sgdbench.executors import available_cores

        assert (table["threads"] == split_threads(2, available_cores())).all()
    steps = pd.read_parquet(out / "steps")
    assert len(steps) == serial_runs["steps"].sum()  # the driver wrote every step of every run


@pytest.mark.slow
def test_threads_per_job_is_recorded(write_grid: Callable[..., Path], tmp_path: Path) -> None:
    # two runs, so that they go to workers (started by a forkserver: more than one thread)
    grid = write_grid(
        GRID.replace("lr = [0.01, 0.1, 0.5]", "lr = [0.1, 0.2]")
        .replace('["sgd", "adam"]', '"sgd"')
        .replace("epochs = 3", 'epochs = 3\nthreads = "auto"')
    )
    out = tmp_path / "out"
    result = cli(
        "run",
        grid,
        "--out",
        out,
        "-q",
        "--jobs",
        "2",
        "--threads-per-job",
        "3",
        "--always-parallel",
    )
    assert result.exit_code == 0, result
    assert (pd.read_parquet(out / "runs.parquet")["threads"] == 3).all()
    # a grid that fixes its threads keeps them: they are part of the run
    fixed = write_grid(GRID.replace("epochs = 3", "epochs = 3\nthreads = 1"), "fixed.toml")
    result = cli(
        "run",
        fixed,
        "--out",
        tmp_path / "fixed",
        "-q",
        "--jobs",
        "2",
        "--threads-per-job",
        "3",
        "--always-parallel",
    )
    assert result.exit_code == 0, result
    assert (pd.read_parquet(tmp_path / "fixed" / "runs.parquet")["threads"] == 1).all()


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["process", "dask"])
def test_a_dying_worker_loses_nothing(
    tmp_path: Path, request: pytest.FixtureRequest, executor: str
) -> None:
    grid, armed = killer_grid(tmp_path)
    out = tmp_path / "out"
    if executor == "process":
        extra = ["--jobs", "2", "--always-parallel"]
    else:
        extra = ["--scheduler", request.getfixturevalue("cluster")]
    result = cli("run", grid, "--out", out, "-q", *extra)
    assert result.exit_code == 1, result  # one run failed
    table = runs(out)
    # seed 1 killed its worker once and was retried; seed 2 kills every worker it runs on;
    # seeds 0 and 3 (which may have shared a dying pool or worker) finished normally
    assert list(table["status"]) == ["ok", "ok", "failed", "ok"], table["message"]
    assert "died" in table.loc[2, "message"]
    assert table.loc[[0, 1, 3], "loss_digest"].notna().all()
    # a rerun completes the grid
    armed.unlink()
    result = cli("run", grid, "--out", out, "-q", *extra)
    assert result.exit_code == 0, result
    assert "3 of 4 runs already complete" in result.stderr
    assert (runs(out)["status"] == "ok").all()
