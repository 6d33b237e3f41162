"""Executors run units of work and yield ``(spec, trajectory)`` pairs as they finish; only the
driver (the caller) writes files.

``serial`` runs in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from sgdbench.engine import Unit, execute_unit
from sgdbench.engine.trajectory import Trajectory
from sgdbench.spec import RunSpec

EXECUTORS = ("serial",)
Results = Iterator[tuple[RunSpec, Trajectory]]


def serial(units: Iterable[Unit], should_stop: Callable[[], bool] | None = None) -> Results:
    """Run each unit in turn in this process."""
    for unit in units:
        yield from zip(unit, execute_unit(unit, should_stop), strict=True)


def get(name: str) -> Callable[..., Results]:
    if name == "serial":
        return serial
    raise ValueError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
