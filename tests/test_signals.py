"""Real signals to a real driver: workers die with it (SIGKILL), and SIGTERM is a Ctrl-C
(finished runs kept, the run in training checkpointed, exit 130)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from sgdbench.executors import lifeline
from tests.helpers import REPO, wait_until

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
    pytest.mark.slow,  # drivers and workers in real processes
]

STARTUP_S = 180  # a loaded 2-core machine takes tens of seconds to start a driver and 2 workers

# LR runs per batch size: batch_size "full" is done in 20 steps, batch_size 1 trains for minutes.
GRID = """
name = "signals"
[problem]
name = "linear"
n_samples = 4000
n_features = 5
[train]
epochs = 20
max_seconds = 600
checkpoint_every = 100000000
[grid]
optimizer = "sgd"
lr = LR
batch_size = BATCH
"""


def proc_state(pid: int) -> str | None:
    """The process's state letter (R, S, Z, ...), or None when it no longer exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")  # a zombie is dead, just not yet reaped


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {p for p in found if alive(p)}


def has_torch(pid: int) -> bool:
    """The process has loaded libtorch: a worker whose initializer ran."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``deadline_s``."""
    wait_until(condition, deadline_s, what)


def start_driver(tmp_path: Path, batch: str, lr: str, *args: str) -> subprocess.Popen[str]:
    grid = tmp_path / "grid.toml"
    grid.write_text(textwrap.dedent(GRID).replace("BATCH", batch).replace("LR", lr))
    return subprocess.Popen(
        [sys.executable, "-m", "sgdbench", "run", str(grid), "--out", str(tmp_path / "out"), *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def committed_rows(out: Path) -> int:
    try:
        return len(pd.read_parquet(out / "runs.parquet"))
    except (FileNotFoundError, OSError):
        return 0


@pytest.mark.parametrize(
    "executor",
    [[], ["--executor", "dask"]],
    ids=["process", "dask"],  # Dask's LocalCluster workers watch their parent themselves
)
def test_workers_exit_within_seconds_of_a_sigkilled_driver(tmp_path, executor):
    if executor:
        pytest.importorskip("distributed")
    driver = start_driver(
        tmp_path, "1", "[0.01, 0.02]", "--jobs", "2", "--always-parallel", *executor
    )
    try:
        # Both workers initialized (they import torch after setting up their lifeline).
        wait_for(
            lambda: sum(map(has_torch, descendants(driver.pid))) >= 2,
            STARTUP_S,
            "the two workers never started",
        )
        workers = descendants(driver.pid)
        driver.kill()
        driver.wait()
        wait_for(
            lambda: not any(alive(p) for p in workers),
            10,
            f"workers {sorted(p for p in workers if alive(p))} outlived their driver",
        )
        # Nobody holds the driver's stdout/stderr any more: a script reading them is not hung.
        driver.communicate(timeout=10)
    finally:
        for pid in descendants(driver.pid) | {driver.pid}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    "jobs", [[], ["--jobs", "2", "--always-parallel"]], ids=["serial", "jobs2"]
)
def test_sigterm_keeps_finished_runs_and_exits_130(tmp_path, jobs):
    out = tmp_path / "out"
    driver = start_driver(tmp_path, '["full", 1]', "0.01", *jobs)
    try:
        # The full-batch run is committed; the batch-size-1 run is still training.
        wait_for(lambda: committed_rows(out) >= 1, STARTUP_S, "the quick run never finished")
        workers = descendants(driver.pid)
        driver.send_signal(signal.SIGTERM)
        _, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, stderr
    assert "interrupted; finished runs are kept" in stderr
    runs = pd.read_parquet(out / "runs.parquet")
    assert list(runs["batch_size"]) == [4000]
    assert list(runs["status"]) == ["ok"]
    wait_for(lambda: not any(alive(p) for p in workers), 10, "workers outlived their driver")
    if not jobs:
        # Serially the run in training stops at its next window and saves a checkpoint there
        # (its periodic checkpoints are too far apart to have made one).
        assert len(list((out / "checkpoints").glob("*.pt"))) == 1


def test_lifeline_exits_a_worker_whose_driver_died_before_it_started():
    code = (
        "import os\n"
        "from sgdbench.executors import lifeline\n"
        "lifeline.die_with_driver(os.getppid() + 1)\n"  # not our parent: as if it had died
        "raise SystemExit(0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120
    )
    assert result.returncode == lifeline.EXIT_CODE


def test_parent_death_signal_is_set_on_linux():
    assert lifeline.set_parent_death_signal(signal.SIGKILL) is True
    # Leave this process as it was: no signal on the parent's death.
    lifeline.set_parent_death_signal(0)
