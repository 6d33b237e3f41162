"""Engines train runs and return ``Trajectory``s.

A *unit of work* is a list of specs trained together: one spec on the eager engine, a group of
runs of one shape on the stacked engine. ``plan`` cuts a grid into units; ``execute_unit`` is the
one picklable function that every executor calls for a unit.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from sgdbench.engine.trajectory import Trajectory
from sgdbench.halving import group_key as halving_key
from sgdbench.spec import RunSpec

Unit = list[RunSpec]
# Most members in one stacked unit; SGDBENCH_MAX_GROUP_SIZE overrides it. Past ~256 members a
# small model's step is no longer overhead-bound, so larger units gain little and cost memory.
MAX_GROUP_SIZE = 256


def plan(specs: list[RunSpec], max_group_size: int | None = None) -> list[Unit]:
    """Group specs into units of work: one run per unit on the eager engine; on the stacked
    engine, runs of one ``group_id`` together, at most ``max_group_size`` per unit; a halving
    group whole (eager: ``halving.group_key``). Units come in the order of their first run."""
    cap = max_group_size or int(os.environ.get("SGDBENCH_MAX_GROUP_SIZE", MAX_GROUP_SIZE))
    if cap < 1:
        raise ValueError(f"max_group_size must be >= 1, got {cap}")
    units: list[Unit] = []
    open_units: dict[str, Unit] = {}
    for spec in specs:
        if spec.engine != "stacked" and not spec.halving:
            units.append([spec])
            continue
        key = spec.group_id if spec.engine == "stacked" else halving_key(spec)
        unit = open_units.get(key)
        if unit is None:
            unit = open_units[key] = []
            units.append(unit)
        unit.append(spec)
        # A halving group stays whole: its rung decisions compare every configuration.
        if len(unit) >= cap and not spec.halving:
            del open_units[key]  # the group's next run starts a new unit
    return units


def execute_unit(unit: Unit, should_stop: Callable[[], bool] | None = None) -> list[Trajectory]:
    """Train one unit (``repeat`` times, see ``repeats``); one trajectory per spec, in the
    unit's order."""
    from sgdbench.engine.repeats import repeat_unit

    return repeat_unit(unit, lambda specs: _train_unit(specs, should_stop), should_stop)


def _train_unit(unit: Unit, should_stop: Callable[[], bool] | None) -> list[Trajectory]:
    if unit and unit[0].engine == "stacked":
        from sgdbench.engine import stacked

        return stacked.run_group(unit, should_stop)
    if unit and unit[0].halving:
        from sgdbench.engine import eager_halving

        return eager_halving.run_group(unit, should_stop)
    from sgdbench.engine import eager

    return [eager.run(spec, should_stop) for spec in unit]
