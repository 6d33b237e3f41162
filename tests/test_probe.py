"""The machine-speed probe (``sgdbench.engine.probe``): timed beside the windows, never part of
the run."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from sgdbench.engine import probe
from sgdbench.engine.state import RunState
from sgdbench.engine.trajectory import EVAL_COLUMNS
from sgdbench.plan import load_grid
from tests.test_timing import LINEAR, run, runs_of


def test_the_probe_touches_no_random_generator_and_takes_cpu_time() -> None:
    rng = torch.get_rng_state()
    seconds = [probe.measure(time.thread_time) for _ in range(3)]
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(0 < s < 1 for s in seconds)


class FakeClock:
    """A CPU clock that advances by ``cost`` each time a probe reads it twice."""

    def __init__(self, interrupted: int) -> None:
        self.interrupted, self.now, self.reads = interrupted, 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:  # the end of a probe: 1 ms, or 10 ms when interrupted
            self.now += 0.010 if self.reads // 2 == self.interrupted else 0.001
        return self.now


def test_the_schedule_bounds_the_probes_cost_and_an_interrupted_probe_delays_nothing() -> None:
    # probes cost 1 ms; the fourth one was interrupted (10 ms)
    clock = FakeClock(interrupted=4)
    schedule = probe.Schedule()
    window = 0.002
    probed = [not math.isnan(schedule.after(window, clock)) for _ in range(200)]
    assert all(probed[: probe.FIRST_PROBES])  # the first windows of a run always
    gaps = np.diff(np.flatnonzero(probed)[probe.FIRST_PROBES - 1 :])
    # every PROBE_EVERY x 1 ms of training: the 10 ms probe does not put the next one off
    expected = math.ceil(probe.PROBE_EVERY * 0.001 / window)
    assert set(gaps.tolist()) == {expected}
    assert math.isnan(probe.Schedule().after(math.nan, clock))  # no CPU time (CUDA): no probe


def test_every_run_and_repeat_stores_probe_times_beside_its_windows(tmp_path: Path) -> None:
    for engine in ("eager", "stacked"):
        code, out = run(tmp_path / engine, "--repeat", "2", "--engine", engine)
        assert code == 0
        for _, r in runs_of(out).iterrows():
            probes = np.asarray(r["window_probe_s"])
            assert len(probes) == len(r["window_steps"])
            for k in (0, 1):  # the first window of each repeat is probed
                assert np.isfinite(probes[np.asarray(r["window_repeat"]) == k][0])
            taken = probes[np.isfinite(probes)]
            assert (taken > 0).all() and len(taken) < len(probes)


def test_a_checkpoint_from_before_the_probe_loads_without_probe_times(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(LINEAR.format(extra=""))
    spec = load_grid(grid).runs[0]
    state = RunState(spec, {c: [] for c in EVAL_COLUMNS})
    state.step, state.clock = 20, 0.5
    saved = state.state_dict()
    saved["windows"] = torch.tensor([[10.0, 10.0, 0.1, 0.09]], dtype=torch.float64)
    restored = RunState(spec, {c: [] for c in EVAL_COLUMNS})
    restored.load_state_dict(saved)
    (start, steps, seconds, cpu, probe_s) = restored.timed_windows[0]
    assert (start, steps, seconds, cpu) == (10, 10, 0.1, 0.09) and math.isnan(probe_s)
