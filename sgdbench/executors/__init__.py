"""Executors run units of work and yield ``(spec, trajectory)`` pairs as they finish; only the
driver (the caller) writes files.

- ``serial``: each unit in turn, in this process.
- ``process``: N long-lived worker processes on this machine (``process_pool``).
- ``dask``: a Dask cluster, existing (by address) or a ``LocalCluster`` (``dask_cluster``).

Every executor has the signature ``(units, should_stop=None, *, options, activity)``. What they
share lives in ``executors.base``, which the executor modules import (never this package), so
that this module may dispatch to them without an import cycle.
"""

from __future__ import annotations

from sgdbench.executors.base import (
    Activity,
    Executor,
    ExecutorOptions,
    Results,
    available_cores,
    failed_unit,
    serial,
    split_threads,
    unit_key,
)

__all__ = [
    "EXECUTORS",
    "Activity",
    "Executor",
    "ExecutorOptions",
    "Results",
    "available_cores",
    "failed_unit",
    "get",
    "serial",
    "split_threads",
    "unit_key",
]

EXECUTORS = ("serial", "process", "dask")


def get(name: str) -> Executor:
    """The executor called ``name`` (its module is imported only when asked for)."""
    if name == "serial":
        return serial
    if name == "process":
        from sgdbench.executors.process_pool import run_process_pool

        return run_process_pool
    if name == "dask":
        from sgdbench.executors.dask_cluster import run_dask

        return run_dask
    raise ValueError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
