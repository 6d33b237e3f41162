"""What every executor shares: options, the activity it reports, thread and core counts,
failed trajectories and task keys. The executors import from here (never from the package), so
that ``sgdbench.executors`` can dispatch to them without an import cycle."""

from __future__ import annotations

import datetime as dt
import importlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sgdbench.engine import Unit, execute_unit
from sgdbench.engine.trajectory import Trajectory
from sgdbench.spec import RunSpec

Results = Iterator[tuple[RunSpec, Trajectory]]


@dataclass(frozen=True)
class ExecutorOptions:
    """How to spread units over workers. None means "size it to the machine"."""

    jobs: int | None = None  # process: worker processes; dask: LocalCluster workers
    threads_per_job: int | None = None  # intra-op threads per worker (a spec's own wins)
    scheduler: str | None = None  # dask: address of an existing scheduler
    retries: int = 1  # times a unit whose worker died is run again before it is `failed`
    always_parallel: bool = False  # start workers even for a grid too short to repay them


@dataclass
class Activity:
    """What an executor is doing now, for the progress bar (updated by the executor)."""

    running: int = 0  # runs (not units) in flight on workers
    notes: list[str] = field(default_factory=list)  # one-line warnings for the user


Executor = Callable[..., Results]


# What a worker needs before its first run: imported once by the driver (fork) or forkserver.
PRELOAD = ["torch", "sgdbench.engine", "sgdbench.engine.eager", "sgdbench.engine.stacked"]


def preload() -> None:
    """Import ``PRELOAD`` here, so that workers forked from this process need not."""
    for module in PRELOAD:
        importlib.import_module(module)


def start_method(units: list[Unit], threads: int, gpus: list[str] | None) -> str:
    """``fork`` where it is safe and cheap (Linux, one intra-op thread in every run, no GPU),
    else ``forkserver`` (POSIX), else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    # The worker sets ``threads`` first, then each run its own.
    one_thread = threads == 1 and all(
        spec.threads in (1, "auto") for unit in units for spec in unit
    )
    cpu_only = gpus is None and all(spec.device == "cpu" for unit in units for spec in unit)
    if sys.platform.startswith("linux") and "fork" in methods and one_thread and cpu_only:
        import torch

        if not torch.cuda.is_initialized():
            return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def split_threads(workers: int, cores: int, threads_per_job: int | None = None) -> int:
    """Intra-op threads per worker so that ``workers x threads <= cores`` (at least 1 each).

    An explicit ``threads_per_job`` wins, even if it oversubscribes.
    """
    if threads_per_job is not None:
        if threads_per_job < 1:
            raise ValueError(f"threads per job must be >= 1, got {threads_per_job}")
        return threads_per_job
    return max(1, cores // max(1, workers))


def unit_key(unit: Unit) -> str:
    """A task name that is the same whenever the same runs are submitted (Dask keys)."""
    if len(unit) == 1:
        return f"sgdbench-{unit[0].run_id}"
    import hashlib

    digest = hashlib.sha256(",".join(spec.run_id for spec in unit).encode()).hexdigest()[:8]
    return f"sgdbench-{unit[0].run_id}+{len(unit) - 1}-{digest}"


def failed_unit(unit: Unit, message: str, traceback: str | None = None) -> list[Trajectory]:
    """``failed`` trajectories for a unit that never came back (its worker died, say)."""
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return [
        Trajectory(
            spec_json=spec.to_json(),
            run_id=spec.run_id,
            status="failed",
            message=message,
            started_at=started_at,
            traceback=traceback,
        )
        for spec in unit
    ]


def serial(
    units: Iterable[Unit],
    should_stop: Callable[[], bool] | None = None,
    *,
    options: ExecutorOptions | None = None,
    activity: Activity | None = None,
) -> Results:
    """Run each unit in turn in this process."""
    for unit in units:
        if activity is not None:
            activity.running = len(unit)
        yield from zip(unit, execute_unit(unit, should_stop), strict=True)
    if activity is not None:
        activity.running = 0
