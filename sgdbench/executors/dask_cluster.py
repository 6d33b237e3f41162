"""``--executor dask``: units run as tasks on a Dask cluster.

With ``--scheduler tcp://HOST:PORT`` the driver joins an existing cluster (workers on other
machines need sgdbench, and any plug-in problem, importable); without it a ``LocalCluster``
sized to this machine is started and closed again. Tasks are keyed by run id, so a unit that is
already on the cluster (submitted twice, or by a second driver) is computed once. Trajectories
come back to the driver, which alone writes the results: no shared filesystem is needed.

A worker that dies mid-task makes the scheduler run the task elsewhere; after ``retries`` such
deaths it gives up (``KilledWorker``) and the unit is recorded ``failed``.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

from sgdbench.engine import Unit, execute_unit
from sgdbench.engine.trajectory import Trajectory
from sgdbench.errors import UsageError
from sgdbench.executors import (
    Activity,
    ExecutorOptions,
    Results,
    available_cores,
    failed_unit,
    split_threads,
    unit_key,
)

CONNECT_TIMEOUT_S = 10


def import_distributed() -> ModuleType:
    """``distributed``, or a one-line usage error saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise UsageError(
            "sgdbench: --executor dask needs dask[distributed]: pip install 'sgdbench[dask]'"
        ) from None
    return distributed


@contextlib.contextmanager
def open_client(options: ExecutorOptions) -> Iterator[Any]:
    """A client of the cluster at ``options.scheduler``, or of a new LocalCluster."""
    distributed = import_distributed()
    if options.scheduler:
        try:
            client = distributed.Client(options.scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as e:
            first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UsageError(
                f"sgdbench: cannot reach the Dask scheduler at {options.scheduler}: {first_line}"
            ) from None
        with client:
            yield client
        return
    with (
        distributed.LocalCluster(
            n_workers=options.jobs or available_cores(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            scheduler_kwargs={"allowed_failures": options.retries},
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
    """Submit every unit to a Dask cluster; yield results as they complete."""
    options = options or ExecutorOptions()
    activity = activity if activity is not None else Activity()
    units = list(units)
    if not units:
        return
    distributed = import_distributed()
    with open_client(options) as client:
        host_slots = slots_by_host(client)
        total_slots = sum(host_slots.values()) or 1
        pending: dict[Any, Unit] = {}
        for unit in units:
            future = client.submit(
                run_unit_on_worker,
                unit,
                host_slots,
                options.threads_per_job,
                key=unit_key(unit),
                retries=options.retries,
            )
            pending[future] = unit
        try:
            for future in distributed.as_completed(list(pending)):
                unit = pending.pop(future)
                try:
                    trajectories = future.result()
                except distributed.KilledWorker:
                    trajectories = failed_unit(
                        unit,
                        "Dask worker died while running this run "
                        f"(KilledWorker after {options.retries + 1} attempts)",
                    )
                except Exception as e:
                    first_line = str(e).splitlines()[0] if str(e) else ""
                    trajectories = failed_unit(
                        unit,
                        f"{type(e).__name__}: {first_line}".rstrip(": "),
                        traceback.format_exc(),
                    )
                future.release()
                activity.running = min(sum(len(u) for u in pending.values()), total_slots)
                yield from zip(unit, trajectories, strict=True)
                if should_stop is not None and should_stop():
                    break
        finally:
            activity.running = 0
            if pending:
                client.cancel(list(pending))
