"""``--executor dask``: units run as tasks on a Dask cluster.

With ``--scheduler tcp://HOST:PORT`` the driver joins an existing cluster (workers on other
machines need sgdbench, and any plug-in problem, importable); without it a ``LocalCluster``
sized to this machine is started and closed again; its workers are forked from the driver
(torch imported once) where ``--jobs`` would fork them (``base.start_method``), else spawned.
A LocalCluster is started only when it pays off, by the rule of ``--jobs`` (``executors.payoff``:
importing distributed and starting a forked cluster costs ~0.8 s, so the driver runs the units
itself until the serial time left exceeds ~3.6 s on 2 idle cores); a grid too short for that runs
entirely in the driver, and one line says so. A cluster given by address is always used.
Tasks are keyed by run id, so a unit that is already on the cluster (submitted twice, or by a
second driver) is computed once. Trajectories come back to the driver, which alone writes the
results: no shared filesystem is needed.

A worker that dies mid-task: once the scheduler gives up on the task (``KilledWorker``; the
``LocalCluster`` started here gives up at the first death) the unit is run again *alone*, so a
second death is its own and it is recorded ``failed``, while units that shared the dead worker
finish normally. As with ``--jobs``, only the driver writes results.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

from sgdbench.engine import Unit, execute_unit
from sgdbench.engine.trajectory import Trajectory
from sgdbench.errors import UsageError, describe
from sgdbench.executors.base import (
    Activity,
    ExecutorOptions,
    Results,
    available_cores,
    failed_unit,
    preload,
    split_threads,
    start_method,
    unit_key,
)
from sgdbench.executors.payoff import serial_until_parallel_pays

CONNECT_TIMEOUT_S = 10


MISSING = "sgdbench: --executor dask needs dask[distributed]: pip install 'sgdbench[dask]'"


def import_distributed() -> ModuleType:
    """``distributed``, or a one-line usage error saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise UsageError(MISSING) from None
    return distributed


def check_distributed() -> None:
    """The usage error of ``import_distributed`` without the import (half a second)."""
    try:
        found = importlib.util.find_spec("distributed") is not None
    except ValueError:  # in sys.modules as None: an import would fail
        found = False
    if not found:
        raise UsageError(MISSING)


@contextlib.contextmanager
def open_client(options: ExecutorOptions, method: str = "spawn") -> Iterator[Any]:
    """A client of the cluster at ``options.scheduler``, or of a new LocalCluster whose worker
    processes start by ``method`` (``fork``: from this process, torch already imported)."""
    distributed = import_distributed()
    if options.scheduler:
        try:
            client = distributed.Client(options.scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as e:
            raise UsageError(
                f"sgdbench: cannot reach the Dask scheduler at {options.scheduler}: {describe(e)}"
            ) from None
        with client:
            yield client
        return
    import dask

    if method == "fork":
        preload()
    else:
        method = "spawn"  # Dask's own forkserver preloads Dask's packages, not torch
    with (
        dask.config.set(
            {
                "distributed.worker.multiprocessing-method": method,
                # The statistical profiler samples the task thread's stack every 10 ms, each
                # sample waiting for the GIL that training holds: the workers took 1.2-1.6x the
                # CPU with it (12 runs of 1000 steps), and nobody reads its profiles.
                "distributed.worker.profile.enabled": False,
                "distributed.admin.system-monitor.gil.enabled": False,
            }
        ),
        distributed.LocalCluster(
            n_workers=options.jobs or available_cores(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,  # no dashboard: it imports bokeh (0.1-0.2 s) for nobody
            silence_logs=logging.ERROR,
            # Give up on a task at its worker's first death: run_dask retries it alone.
            scheduler_kwargs={"allowed_failures": 0},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def slots_by_host(client: Any) -> dict[str, int]:
    """Task slots (worker threads) per host, to split each host's cores between them."""
    slots: dict[str, int] = {}
    for worker in client.scheduler_info(n_workers=-1)["workers"].values():
        slots[worker["host"]] = slots.get(worker["host"], 0) + int(worker["nthreads"])
    return slots


def run_unit_on_worker(
    unit: Unit, host_slots: dict[str, int], threads_per_job: int | None
) -> list[Trajectory]:
    """The Dask task: set this worker's intra-op threads, then train the unit."""
    import torch
    from distributed import get_worker
    from distributed.comm.addressing import get_address_host

    if threads_per_job is None:
        worker = get_worker()
        slots = host_slots.get(get_address_host(worker.address)) or worker.state.nthreads
        threads_per_job = split_threads(slots, available_cores())
    torch.set_num_threads(threads_per_job)
    return execute_unit(unit)


def run_dask(
    units: Iterable[Unit],
    should_stop: Callable[[], bool] | None = None,
    *,
    options: ExecutorOptions | None = None,
    activity: Activity | None = None,
) -> Results:
    """Run units on a Dask cluster; yield results as they complete.

    At most one unit per worker thread is submitted at a time: the scheduler blames a worker's
    death on every task assigned to that worker, so queueing more would make bystanders pay.
    """
    options = options or ExecutorOptions()
    activity = activity if activity is not None else Activity()
    todo: deque[Unit] = deque(units)
    if not todo:
        return
    check_distributed()
    workers = options.jobs or available_cores()
    threads = split_threads(workers, available_cores(), options.threads_per_job)
    method = start_method(list(todo), threads, None)
    how = "dask-fork" if method == "fork" else "dask-spawn"
    if not (
        yield from serial_until_parallel_pays(
            todo, should_stop, options, workers=workers, threads=threads, how=how, activity=activity
        )
    ):
        return
    distributed = import_distributed()
    with open_client(options, method) as client:
        host_slots = slots_by_host(client)
        in_flight: dict[Any, Unit] = {}
        retry_alone: deque[Unit] = deque()
        killed: set[int] = set()  # id(unit) of units already retried alone
        completed = distributed.as_completed()

        def submit(unit: Unit, key: str) -> None:
            future = client.submit(
                run_unit_on_worker,
                unit,
                host_slots,
                options.threads_per_job,
                key=key,
                retries=options.retries,
            )
            in_flight[future] = unit
            completed.add(future)

        def dispatch() -> None:
            if retry_alone:
                if not in_flight:
                    unit = retry_alone.popleft()
                    submit(unit, unit_key(unit) + "-alone")
                return
            slots = max(1, sum(client.nthreads().values()))  # the cluster may grow or shrink
            while todo and len(in_flight) < slots:
                unit = todo.popleft()
                submit(unit, unit_key(unit))

        try:
            dispatch()
            for future in completed:
                unit = in_flight.pop(future)
                trajectories: list[Trajectory] | None
                try:
                    trajectories = future.result()
                except distributed.KilledWorker:
                    if id(unit) in killed:
                        message = "Dask worker died while running this run (also when alone)"
                        trajectories = failed_unit(unit, message)
                    else:
                        killed.add(id(unit))
                        retry_alone.append(unit)
                        trajectories = None
                        activity.notes.append(
                            f"sgdbench: a Dask worker died; run {unit[0].run_id} runs again, alone"
                        )
                except Exception as e:
                    trajectories = failed_unit(unit, describe(e), traceback.format_exc())
                future.release()
                if trajectories is not None:
                    activity.running = sum(len(u) for u in in_flight.values())
                    yield from zip(unit, trajectories, strict=True)
                    if should_stop is not None and should_stop():
                        break
                dispatch()
                activity.running = sum(len(u) for u in in_flight.values())
        finally:
            activity.running = 0
            if in_flight:
                client.cancel(list(in_flight))
