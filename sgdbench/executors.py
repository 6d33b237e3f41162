"""Executors run specs and yield trajectories as they finish; only the driver writes files.

``serial`` runs in this process. (``process`` and ``dask`` come with parallel grids.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from sgdbench.engine import execute
from sgdbench.engine.trajectory import Trajectory
from sgdbench.spec import RunSpec

EXECUTORS = ("serial",)


def serial(
    specs: Iterable[RunSpec], should_stop: Callable[[], bool] | None = None
) -> Iterator[tuple[RunSpec, Trajectory]]:
    """Run each spec in turn in this process."""
    for spec in specs:
        yield spec, execute(spec, should_stop)


def get(name: str) -> Callable[..., Iterator[tuple[RunSpec, Trajectory]]]:
    if name == "serial":
        return serial
    raise ValueError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
