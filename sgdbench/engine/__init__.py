"""Engines train runs and return ``Trajectory``s.

A *unit of work* is a list of specs trained together: one spec on the eager engine, a group of
runs of one shape on the stacked engine. ``plan`` cuts a grid into units; ``execute_unit`` is the
one picklable function that every executor calls for a unit.
"""

from __future__ import annotations

from collections.abc import Callable

from sgdbench.engine.trajectory import Trajectory
from sgdbench.spec import RunSpec

Unit = list[RunSpec]


def plan(specs: list[RunSpec]) -> list[Unit]:
    """Group specs into units of work (eager: one run per unit)."""
    return [[spec] for spec in specs]


def execute_unit(unit: Unit, should_stop: Callable[[], bool] | None = None) -> list[Trajectory]:
    """Train one unit; one trajectory per spec, in the unit's order."""
    from sgdbench.engine import eager

    return [eager.run(spec, should_stop) for spec in unit]
