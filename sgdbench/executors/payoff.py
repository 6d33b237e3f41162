"""When ``--jobs N`` or a Dask LocalCluster starts its workers: only once they pay off.

Starting workers costs about ``START_COST_S[how]`` seconds before the first result (measured on
2 cores: a fork pool 0.03-0.08 s; importing distributed 0.5 s and a forked LocalCluster
0.15-0.3 s; a forkserver or spawned worker imports torch again, 1.5-2.5 s), and N workers,
which spend ``OVERHEAD`` more CPU on each run than the driver would, save at most
(1 - (1 + OVERHEAD) / N) of the serial time left. So the driver runs units itself, timing them,
and starts workers only once the serial time of the units left, estimated from the last unit's
time per step, would save more than ``MARGIN`` x that cost::

    t_last x (steps left / steps of the last unit) x (1 - (1 + OVERHEAD) / N) > MARGIN x cost

N is the workers that could really run at once: at most the units left, ``cores // threads``,
and 1 + the cores that stood idle beside the driver while it trained (``/proc/stat``; other
processes' load leaves none, and then workers would only take turns on the busy cores). The
first unit of a process pays one-off costs (lazy imports, first kernels), so it decides alone
only when it took longer than ``MARGIN`` x the cost; else a second unit is timed first. A grid
that never repays the workers runs entirely in the driver, and one line says so. A Dask cluster
given by address, ``--always-parallel``, or a grid of 2 to N units starts workers at once: with
no more units than workers, the unit timed first would run alone while the rest waited for it
(two long units: twice the time), a loss without bound, against at most the start-up cost.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable

from sgdbench.engine import Unit, execute_unit
from sgdbench.engine.trajectory import Trajectory
from sgdbench.executors.base import Activity, ExecutorOptions, available_cores
from sgdbench.spec import RunSpec

START_COST_S = {"fork": 0.1, "forkserver": 2.0, "spawn": 2.5, "dask-fork": 0.8, "dask-spawn": 3.0}
MARGIN = 2.0  # a saving of twice the cost: a net gain of at least the cost
# Workers' own bookkeeping and sending trajectories back: --jobs 2 took 1.10-1.15x the CPU of
# serial on 24 runs of 1000 steps, start-up included.
OVERHEAD = 0.1
IDLE_WINDOW_S = 1.0  # idle cores are measured over at least the last unit, or this long


def unit_steps(unit: Unit) -> int:
    """Training steps of a unit (a stacked group's members train together: its longest)."""
    return max(1, max(spec.steps * spec.repeat for spec in unit))


def cpu_ticks() -> tuple[int, int] | None:
    """(idle, total) clock ticks of the whole machine since boot, or None (not Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[3] + ticks[4], sum(ticks)


def idle_cores(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Cores of the machine that stood idle between two ``cpu_ticks`` readings (None: unknown)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


def parallel_pays_off(
    last_s: float,
    last_steps: int,
    todo: Iterable[Unit],
    workers: int,
    threads: int,
    cost_s: float,
    idle: float | None = None,
) -> bool:
    """Whether ``workers`` workers of ``threads`` threads would save more than ``MARGIN x
    cost_s`` on ``todo``, at the last unit's time per step, with ``idle`` cores beside the
    driver (None: as many as there are)."""
    units = list(todo)
    # Workers beyond the cores (each with its intra-op threads) run no faster.
    useful = float(min(workers, len(units), max(1, available_cores() // threads)))
    if idle is not None:  # the driver kept `threads` cores busy; were there more to be had?
        useful = min(useful, 1 + idle / threads)
    if useful <= 1 + OVERHEAD:  # no unit left, or no core to run a second one
        return False
    saved = 1 - (1 + OVERHEAD) / useful
    left_s = last_s * sum(unit_steps(u) for u in units) / max(1, last_steps)
    return left_s * saved > MARGIN * cost_s


def serial_until_parallel_pays(
    todo: deque[Unit],
    should_stop: Callable[[], bool] | None,
    options: ExecutorOptions,
    *,
    workers: int,
    threads: int,
    how: str,
    activity: Activity,
) -> Generator[tuple[RunSpec, Trajectory], None, bool]:
    """Run units from ``todo`` in this process (with a worker's ``threads``) until starting
    ``workers`` workers (``how``: a ``START_COST_S`` key) pays off; True if it does, False if
    the grid finished here (a note says so and why) or a stop was asked for. True at once with
    ``always_parallel`` or a Dask scheduler's address (a cluster the user asked for)."""
    if options.always_parallel or options.scheduler:
        return True
    if 1 < len(todo) <= workers:
        # As many units as workers or fewer: timing one first would leave it to run alone and
        # the others to wait for it (two long stacked groups: twice the time). Starting the
        # workers at once risks at most their start-up cost.
        return True
    import torch

    cost = START_COST_S[how]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    ran = runs = 0
    began = mark_s = time.perf_counter()
    mark = cpu_ticks()
    idle: float | None = None
    try:
        while todo:
            unit = todo.popleft()
            activity.running = len(unit)
            start = time.perf_counter()
            trajectories = execute_unit(unit, should_stop)
            seconds = time.perf_counter() - start  # not the writing, which stays here anyway
            yield from zip(unit, trajectories, strict=True)
            ran, runs = ran + 1, runs + len(unit)
            activity.running = 0
            if should_stop is not None and should_stop():
                return False
            now, now_s = cpu_ticks(), time.perf_counter()
            idle = idle_cores(mark, now)
            if now_s - mark_s >= IDLE_WINDOW_S:
                mark, mark_s = now, now_s
            decisive = ran > 1 or seconds > MARGIN * cost
            steps = unit_steps(unit)
            if decisive and parallel_pays_off(seconds, steps, todo, workers, threads, cost, idle):
                return True
    finally:
        torch.set_num_threads(previous)
    beside = "" if idle is None else f", {idle:.1f} idle core(s) beside it"
    activity.notes.append(
        f"sgdbench: the {runs} run(s) ran in this process ({time.perf_counter() - began:.1f} s"
        f"{beside}): too short to repay starting {workers} workers (~{cost:g} s; "
        "--always-parallel starts them anyway)"
    )
    return False
