"""``--jobs N``: units run in N long-lived worker processes on this machine.

Workers start once and are fed units one at a time (never more in flight than workers, see
``_dispatch``). How they start (``start_method``): on Linux, when every run trains with one
intra-op thread and none on a GPU, they are *forked* from the driver, which has imported torch
and the engine already, so a worker costs milliseconds rather than a second torch import; else
from a *forkserver* that imports torch once, before any tensor work (libgomp's thread pool does
not survive a fork: a forked worker must not use more than one OpenMP thread; CUDA must not be
initialised before a fork). A grid of one unit (one run, or one stacked group) runs serially in
the driver, unless ``--always-parallel``: there is nothing to run beside it (one line says so).

Workers are started only when they pay off (``executors.payoff``): the driver runs units
itself, timing them, until N workers would save more than twice the cost of starting them on the
serial time of the units left (fork: ~0.1 s, so 0.45 s left on 2 idle cores; forkserver: ~2 s); a
grid too short for that runs entirely in the driver, and one line says so. A grid of 2 to N
units starts them at once (timing one first would leave the others waiting for it). Forked
workers then inherit the driver's warm state (its imports, first kernels). ``--always-parallel``
starts workers at once, even for one unit (a run that may kill its process, say, runs in a
worker even in a short grid).

Each worker sets its intra-op threads once (``split_threads``: N x threads <= cores) and, when
the grid has ``device = "cuda"`` runs and several GPUs are visible, sees one GPU of its own
through ``CUDA_VISIBLE_DEVICES`` (so ``cuda`` means a different GPU in each worker and run ids do
not change). Neither setting is part of a run's identity; both are recorded per run by the
engine (``threads``, ``device_name``).

A worker that dies (killed, out of memory, ``os._exit``) breaks the whole pool: every unit in
flight is lost with it, but not the results already yielded. The pool is rebuilt and each lost
unit is run again *alone*, so a second death is known to be its own and it is recorded
``failed``; a unit that merely ran beside the culprit finishes normally.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from sgdbench.engine import Unit, execute_unit
from sgdbench.errors import describe
from sgdbench.executors import lifeline
from sgdbench.executors.base import (
    PRELOAD,
    Activity,
    ExecutorOptions,
    Results,
    available_cores,
    failed_unit,
    preload,
    serial,
    split_threads,
    start_method,
)
from sgdbench.executors.payoff import serial_until_parallel_pays

STOP_POLL_S = 0.25  # how often the driver looks at its stop flag while every worker is busy


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def gpu_per_worker(workers: int, gpus: list[str], devices: Iterable[str]) -> list[str] | None:
    """The ``CUDA_VISIBLE_DEVICES`` value of each worker, or None to leave visibility alone.

    Only when some run asks for plain ``cuda`` (any GPU) and none names an index: ``cuda:1``
    means that very GPU, which hiding the others would break. Workers beyond the GPU count
    share GPUs round-robin.
    """
    devices = set(devices)
    if not gpus or "cuda" not in devices or any(d.startswith("cuda:") for d in devices):
        return None
    return [gpus[i % len(gpus)] for i in range(workers)]


def _worker_gpus(workers: int, todo: Iterable[Unit]) -> tuple[list[str] | None, list[str]]:
    """Each worker's ``CUDA_VISIBLE_DEVICES`` (``gpu_per_worker``) and a note if they share."""
    devices = {spec.device for unit in todo for spec in unit}
    gpus = gpu_per_worker(workers, visible_gpus(), devices) if "cuda" in devices else None
    if gpus is None or workers <= len(set(gpus)):
        return gpus, []
    note = (
        f"sgdbench: {workers} workers share {len(set(gpus))} GPU(s): lower --jobs to give "
        "each worker its own"
    )
    return gpus, [note]


def _init_worker(threads: int, gpu_queue: Any, driver_pid: int, forkserver: bool) -> None:
    """Runs once in each new worker, before it trains (and, when spawned, imports torch)."""
    # A driver killed with SIGKILL cannot stop us: exit by ourselves when it is gone.
    # A forkserver's worker is the forkserver's child, not the driver's.
    lifeline.die_with_driver(driver_pid, child=not forkserver)
    # Ctrl-C is the driver's to handle: it stops the workers and keeps the finished runs. A
    # forked worker would inherit the driver's SIGTERM handler (which only sets a flag), and
    # then ignore the driver's terminate().
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_queue.get(timeout=60)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


class _Pool:
    """A ``ProcessPoolExecutor`` and the ways to stop it."""

    def __init__(self, workers: int, threads: int, gpus: list[str] | None, method: str) -> None:
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(PRELOAD)
        elif method == "fork":
            preload()
        queue = None
        if gpus is not None:
            queue = ctx.Queue()
            for gpu in gpus:
                queue.put(gpu)
        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(threads, queue, os.getpid(), method == "forkserver"),
        )

    def submit(self, unit: Unit) -> Future[list[Any]]:
        return self.executor.submit(execute_unit, unit)

    def close(self, kill: bool) -> None:
        if not kill:
            self.executor.shutdown(wait=True)
            return
        # Python < 3.14 has no public way to stop running workers: terminate them ourselves.
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.terminate()
        for p in processes:
            p.join(timeout=10)


def _dispatch(
    pool: _Pool,
    todo: deque[Unit],
    retry_alone: deque[Unit],
    in_flight: dict[Future[list[Any]], Unit],
    workers: int,
) -> bool:
    """Submit what may run now; False if the pool turned out to be broken (a worker died since
    the last look), the refused unit back at the head of its queue."""
    if retry_alone:
        # A unit that was in flight when a worker died runs alone, so a death is its own.
        queue, limit = retry_alone, 0
    else:
        # No more than `workers` at a time, so that a broken pool loses only the units that
        # were really running, not the whole queue.
        queue, limit = todo, workers - 1
    while queue and len(in_flight) <= limit:
        unit = queue.popleft()
        try:
            in_flight[pool.submit(unit)] = unit
        except BrokenProcessPool:
            queue.appendleft(unit)
            return False
    return True


def run_process_pool(
    units: Iterable[Unit],
    should_stop: Callable[[], bool] | None = None,
    *,
    options: ExecutorOptions | None = None,
    activity: Activity | None = None,
) -> Results:
    """Run units in ``options.jobs`` worker processes; yield results as they complete."""
    options = options or ExecutorOptions()
    activity = activity if activity is not None else Activity()
    todo: deque[Unit] = deque(units)
    if len(todo) < 2 and not (todo and options.always_parallel):
        yield from _alone(todo, should_stop, options, activity)
        return
    workers = options.jobs or available_cores()
    threads = split_threads(workers, available_cores(), options.threads_per_job)
    gpus, gpu_notes = _worker_gpus(workers, todo)
    retry_alone: deque[Unit] = deque()  # in flight when a worker died: rerun one at a time
    deaths: dict[int, int] = {}  # id(unit) -> pool breaks it was in flight for
    in_flight: dict[Future[list[Any]], Unit] = {}
    pool: _Pool | None = None
    method = start_method(list(todo), threads, gpus)
    if not (
        yield from serial_until_parallel_pays(
            todo,
            should_stop,
            options,
            workers=workers,
            threads=threads,
            how=method,
            activity=activity,
        )
    ):
        return
    activity.notes.extend(gpu_notes)
    finished = False
    try:
        while todo or retry_alone or in_flight:
            if pool is None:
                pool = _Pool(workers, threads, gpus, method)
            broken = not _dispatch(pool, todo, retry_alone, in_flight, workers)
            activity.running = sum(len(u) for u in in_flight.values())
            # Bounded, so that a stop request (Ctrl-C, SIGTERM) is seen while long runs train.
            done = set()
            if not broken:
                done = wait(in_flight, timeout=STOP_POLL_S, return_when=FIRST_COMPLETED)[0]
            for future in done:
                unit = in_flight.pop(future)
                try:
                    trajectories = future.result()
                except BrokenProcessPool:
                    broken = True
                    in_flight[future] = unit  # charged with the others below
                    continue
                except Exception as e:  # e.g. a spec that cannot be pickled
                    trajectories = failed_unit(unit, describe(e), traceback.format_exc())
                activity.running -= len(unit)
                yield from zip(unit, trajectories, strict=True)
            if broken:
                # Every unit still in flight died with the pool (or would be refused by it).
                lost = list(in_flight.values())
                in_flight.clear()
                pool.close(kill=True)
                pool = None
                retried = 0
                for unit in lost:
                    deaths[id(unit)] = deaths.get(id(unit), 0) + 1
                    if deaths[id(unit)] > options.retries:
                        message = (
                            "worker process died while running this run "
                            f"({deaths[id(unit)]} times: killed, out of memory or exited)"
                        )
                        yield from zip(unit, failed_unit(unit, message), strict=True)
                    else:
                        retried += len(unit)
                        retry_alone.append(unit)
                if retried:
                    activity.notes.append(
                        f"sgdbench: a worker process died; the {retried} run(s) it may have "
                        "taken down run again, one at a time"
                    )
            if should_stop is not None and should_stop():
                break
        # Stopped early (Ctrl-C, SIGTERM, --fail-fast): runs in flight are abandoned, not awaited.
        finished = not in_flight
    finally:
        activity.running = 0
        if pool is not None:
            pool.close(kill=not finished)


def _alone(
    todo: deque[Unit],
    should_stop: Callable[[], bool] | None,
    options: ExecutorOptions,
    activity: Activity,
) -> Results:
    """A grid of one unit: serially, in the driver (a worker would only add its start-up)."""
    if not todo:
        return
    activity.notes.append(
        f"sgdbench: one unit of work ({len(todo[0])} run(s), trained together): run in this "
        "process, no worker would run beside it"
    )
    import torch

    previous = torch.get_num_threads()
    if options.threads_per_job is not None:  # what a worker would have used
        torch.set_num_threads(split_threads(1, available_cores(), options.threads_per_job))
    try:
        yield from serial(todo, should_stop, activity=activity)
    finally:
        torch.set_num_threads(previous)
