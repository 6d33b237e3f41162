"""Engines train runs and return ``Trajectory``s. ``execute`` is the one picklable entry point
that executors call for a unit of work."""

from __future__ import annotations

from collections.abc import Callable

from sgdbench.engine.trajectory import Trajectory
from sgdbench.spec import RunSpec


def execute(spec: RunSpec, should_stop: Callable[[], bool] | None = None) -> Trajectory:
    """Run one spec on its engine."""
    from sgdbench.engine import eager

    return eager.run(spec, should_stop)
