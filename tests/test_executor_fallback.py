"""``--jobs N`` and a Dask LocalCluster start workers only when they pay off: the driver runs a
short grid itself (one line says so), and starts workers once the units left would repay them."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from sgdbench.executors import payoff
from sgdbench.executors.base import Activity, ExecutorOptions
from sgdbench.executors.payoff import idle_cores, parallel_pays_off, serial_until_parallel_pays
from tests.helpers import cli
from tests.test_executors import GRID  # 6 runs of 36 steps


def units_of(*steps: int) -> list[list[Any]]:
    return [[SimpleNamespace(steps=n, repeat=1, run_id=f"r{i}")] for i, n in enumerate(steps)]


def test_workers_pay_off_only_for_enough_serial_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payoff, "available_cores", lambda: 2)
    cost = payoff.START_COST_S["fork"]
    # 3 runs of 10 steps at 2 ms a step: 60 ms serially, of which 2 workers save 27 ms
    assert not parallel_pays_off(0.02, 10, units_of(10, 10, 10), 2, 1, cost)
    # 23 runs of 1000 steps at 0.11 ms a step: 2.5 s, of which 2 workers save 1.1 s
    assert parallel_pays_off(0.11, 1000, units_of(*[1000] * 23), 2, 1, cost)
    # the estimate scales with the steps left, not the count of units
    assert parallel_pays_off(0.02, 10, units_of(10, 10, 5000), 2, 1, cost)
    # one unit left, one core, or one thread per worker filling the cores: nothing runs beside
    assert not parallel_pays_off(100.0, 10, units_of(1000), 2, 1, cost)
    monkeypatch.setattr(payoff, "available_cores", lambda: 1)
    assert not parallel_pays_off(0.11, 1000, units_of(*[1000] * 23), 2, 1, cost)
    monkeypatch.setattr(payoff, "available_cores", lambda: 4)
    assert not parallel_pays_off(0.11, 1000, units_of(*[1000] * 23), 2, 4, cost)


def test_workers_do_not_start_without_an_idle_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payoff, "available_cores", lambda: 2)
    cost, units = payoff.START_COST_S["fork"], units_of(*[1000] * 23)
    assert parallel_pays_off(0.11, 1000, units, 2, 1, cost, idle=0.9)
    # other processes kept the second core busy: a worker there would only take turns, and
    # cost more than it saves however long the grid
    assert not parallel_pays_off(0.11, 1000, units_of(*[1000] * 230), 2, 1, cost, idle=0.05)
    # a third of a core: workers pay off on a grid long enough
    assert parallel_pays_off(0.11, 1000, units, 2, 1, cost, idle=0.3)
    assert not parallel_pays_off(0.11, 1000, units_of(1000, 1000, 1000), 2, 1, cost, idle=0.3)
    # idle cores from /proc/stat's ticks: (idle, total) of the whole machine
    monkeypatch.setattr(payoff.os, "cpu_count", lambda: 2)
    assert idle_cores((100, 1000), (150, 1100)) == pytest.approx(1.0)
    assert idle_cores((100, 1000), (100, 1100)) == 0
    assert idle_cores(None, (100, 1100)) is None and idle_cores((1, 5), (1, 5)) is None


class Clock:
    """A fake ``time`` module: each unit run takes ``seconds_per_step`` x its steps."""

    def __init__(self, seconds_per_step: float) -> None:
        self.now, self.rate = 0.0, seconds_per_step

    def perf_counter(self) -> float:
        return self.now

    def execute_unit(self, unit: list[Any], should_stop: object = None) -> list[str]:
        self.now += self.rate * max(s.steps for s in unit)
        return [f"trajectory of {s.run_id}" for s in unit]


def drive(
    monkeypatch: pytest.MonkeyPatch,
    todo: deque[list[Any]],
    seconds_per_step: float,
    idle_share: float | None = 0.5,
) -> tuple[bool, list[Any], Activity]:
    """Run ``serial_until_parallel_pays`` on a fake clock, the machine's cores idle
    ``idle_share`` of the time (None: unknown)."""
    clock = Clock(seconds_per_step)
    monkeypatch.setattr(payoff, "time", clock)
    monkeypatch.setattr(payoff, "execute_unit", clock.execute_unit)
    monkeypatch.setattr(payoff, "available_cores", lambda: 2)
    monkeypatch.setattr(payoff.os, "cpu_count", lambda: 2)

    def ticks() -> tuple[int, int] | None:
        total = round(clock.now * 1000)
        return None if idle_share is None else (round(total * idle_share), total)

    monkeypatch.setattr(payoff, "cpu_ticks", ticks)
    activity = Activity()
    probe = serial_until_parallel_pays(
        todo, None, ExecutorOptions(jobs=2), workers=2, threads=1, how="fork", activity=activity
    )
    yielded = []
    try:
        while True:
            yielded.append(next(probe))
    except StopIteration as stop:
        return stop.value, yielded, activity


def test_a_short_grid_runs_in_the_driver_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    todo = deque(units_of(10, 10, 10, 10))
    parallel, yielded, activity = drive(monkeypatch, todo, 0.002)
    assert not parallel and not todo
    assert [spec.run_id for spec, _ in yielded] == ["r0", "r1", "r2", "r3"]
    (note,) = activity.notes
    assert (
        "the 4 run(s) ran in this process (0.1 s, 1.0 idle core(s) beside it): too short to "
        "repay starting 2 workers" in note
    )


def test_a_long_grid_runs_in_the_driver_while_no_core_is_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    todo = deque(units_of(*[1000] * 24))
    parallel, yielded, activity = drive(monkeypatch, todo, 0.11 / 1000, idle_share=0.0)
    assert not parallel and len(yielded) == 24
    assert "0.0 idle core(s) beside it" in activity.notes[0]
    # where idleness cannot be read, the cores are taken to be free
    todo = deque(units_of(*[1000] * 24))
    parallel, yielded, activity = drive(monkeypatch, todo, 0.11 / 1000, idle_share=None)
    assert parallel and len(yielded) == 2


def test_a_long_grid_starts_workers_after_timing_one_warm_unit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A short first unit may be slowed by one-off costs: a second one is timed before deciding.
    todo = deque(units_of(*[1000] * 24))
    parallel, yielded, activity = drive(monkeypatch, todo, 0.11 / 1000)
    assert parallel and len(yielded) == 2 and len(todo) == 22 and not activity.notes
    # A first unit long enough to dwarf those costs decides alone.
    todo = deque(units_of(*[10_000] * 24))
    parallel, yielded, _ = drive(monkeypatch, todo, 0.11 / 1000)
    assert parallel and len(yielded) == 1 and len(todo) == 23


def test_no_more_units_than_workers_start_workers_at_once() -> None:
    # Two long stacked groups on --jobs 2: timing one in the driver first would leave the other
    # waiting for it (twice the time); starting the workers costs at most their start-up.
    for n_units in (2, 3):
        todo = deque(units_of(*[10] * n_units))
        probe = serial_until_parallel_pays(
            todo, None, ExecutorOptions(), workers=3, threads=1, how="fork", activity=Activity()
        )
        with pytest.raises(StopIteration) as stop:
            next(probe)
        assert stop.value.value is True and len(todo) == n_units


def test_always_parallel_and_a_given_scheduler_start_workers_at_once() -> None:
    for options in (ExecutorOptions(always_parallel=True), ExecutorOptions(scheduler="tcp://x:1")):
        todo = deque(units_of(10, 10))
        probe = serial_until_parallel_pays(
            todo, None, options, workers=2, threads=1, how="fork", activity=Activity()
        )
        with pytest.raises(StopIteration) as stop:
            next(probe)
        assert stop.value.value is True and len(todo) == 2


# --------------------------------------------------------------------------------------------
# end to end (in-process: forked workers, no fresh interpreter)


class NoPool:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a worker pool was started for a short grid")


def digests(out: Path) -> list[str]:
    return sorted(pd.read_parquet(out / "runs.parquet")["loss_digest"])


@pytest.mark.parametrize("executor", [["--jobs", "2"], ["--executor", "dask", "--jobs", "2"]])
def test_a_short_grid_with_workers_asked_for_runs_in_the_driver(
    write_grid: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    executor: list[str],
) -> None:
    monkeypatch.setattr("sgdbench.executors.process_pool._Pool", NoPool)
    monkeypatch.setattr("sgdbench.executors.dask_cluster.open_client", NoPool)
    grid = write_grid(GRID)
    result = cli("run", grid, "--out", tmp_path / "out", *executor)
    assert result.exit_code == 0, result
    assert "the 6 run(s) ran in this process" in result.stderr
    assert "too short to repay starting 2 workers" in result.stderr
    assert cli("run", grid, "--out", tmp_path / "serial", "-q").exit_code == 0
    assert digests(tmp_path / "out") == digests(tmp_path / "serial")


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first run id of every unit submitted to a worker pool, in order."""
    from sgdbench.executors import process_pool

    ids: list[str] = []

    class CountingPool(process_pool._Pool):
        def submit(self, unit: Any) -> Any:
            ids.append(unit[0].run_id)
            return super().submit(unit)

    monkeypatch.setattr(process_pool, "_Pool", CountingPool)
    return ids


def test_a_grid_that_repays_workers_starts_them(
    write_grid: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    submitted: list[str],
) -> None:
    monkeypatch.setattr(payoff, "available_cores", lambda: 2)
    monkeypatch.setattr(payoff, "cpu_ticks", lambda: None)  # idle cores: whatever the load
    # Starting workers as good as free: the first unit (a "long" one) decides alone.
    monkeypatch.setitem(payoff.START_COST_S, "fork", 0.0)
    monkeypatch.setitem(payoff.START_COST_S, "forkserver", 0.0)
    grid = write_grid(GRID)
    result = cli("run", grid, "--out", tmp_path / "out", "--jobs", "2")
    assert result.exit_code == 0, result
    assert "ran in this process" not in result.stderr
    assert len(submitted) == 5  # all but the first, which the driver timed
    assert cli("run", grid, "--out", tmp_path / "serial", "-q").exit_code == 0
    assert digests(tmp_path / "out") == digests(tmp_path / "serial")


def test_always_parallel_runs_even_one_unit_in_a_worker(
    write_grid: Callable[..., Path], tmp_path: Path, submitted: list[str]
) -> None:
    grid = write_grid(GRID.replace('["sgd", "adam"]', '["sgd"]').replace("[0.01, 0.1, 0.5]", "0.1"))
    runs = ["run", grid, "--out", tmp_path / "out", "--jobs", "2", "-q"]
    assert cli(*runs, "--always-parallel").exit_code == 0
    assert len(submitted) == 1  # the one run went to a worker, not the driver
