"""What surrounds a unit of work on its device: the device itself, the seeded RNG context, the
window clock, and turning a unit's exception into ``failed`` trajectories."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import time
import traceback
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

# cuBLAS needs this before its first use for deterministic results (harmless on CPU).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch

from sgdbench.engine import probe, seeding
from sgdbench.engine.trajectory import Trajectory
from sgdbench.errors import describe
from sgdbench.lazy_dynamo import manual_seed
from sgdbench.spec import RunSpec

SYNC_DEBUG_ENV = "SGDBENCH_SYNC_DEBUG"  # "1": a host sync inside a CUDA step loop is an error


class StopRequested(Exception):
    """Raised by a ``should_stop`` callback's owner to end a run early (Ctrl-C)."""


def resolve_device(name: str) -> tuple[torch.device | None, str]:
    """The torch device for ``name``, or None and why it is not available here."""
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            return None, f"device {name!r} requested but CUDA is not available here"
        device = torch.device(name)
        if (device.index or 0) >= torch.cuda.device_count():
            return None, f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s)"
        return device, ""
    return torch.device(name), ""


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def run_info(spec: RunSpec, device: torch.device) -> dict[str, Any]:
    """The environment facts every trajectory carries in ``info``."""
    return {
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "deterministic": spec.deterministic,
    }


@contextlib.contextmanager
def run_context(spec: RunSpec, device: torch.device) -> Iterator[None]:
    """Seed the global RNG (dropout in plug-ins) from the spec and restore everything after."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        manual_seed(seeding.derive_seed(spec.seed, seeding.GLOBAL))
        if isinstance(spec.threads, int):
            torch.set_num_threads(spec.threads)
        if device.type == "cuda":
            torch.use_deterministic_algorithms(spec.deterministic)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            if device.type == "cuda":  # as set above; the call imports torch._inductor (1.5 s)
                torch.use_deterministic_algorithms(deterministic)


@contextlib.contextmanager
def sync_debug_guard() -> Iterator[None]:
    """Make any CUDA host synchronization an error for the duration (the step loop)."""
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


class WindowClock:
    """The training clock of one window: ``with clock:`` around the steps, then ``elapsed``.

    On CUDA it synchronizes before starting and before stopping, so the window's time is its
    kernels' time; nowhere else is the clock read. ``guard_syncs`` runs the window under
    ``sync_debug_guard`` when ``SGDBENCH_SYNC_DEBUG=1``.

    On CPU it also reads the CPU time the window used (``cpu_elapsed``; NaN on CUDA, where the
    work is not the host's): the calling thread's when torch runs on one thread, else the
    process's. Other processes' load stretches the wall-clock time of a window but hardly its
    CPU time, which is what ``compare`` tests when both sides have it. After some ``timed``
    windows (the steady state, which the engine says) it also times the machine-speed probe
    (``probe``) on that clock, outside the window: ``probe_s`` is its CPU seconds after this
    window, NaN when it did not run.
    """

    def __init__(self, device: torch.device, guard_syncs: bool = False) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.guard = self.cuda and guard_syncs and os.environ.get(SYNC_DEBUG_ENV) == "1"
        self.elapsed = 0.0
        self.cpu_elapsed = math.nan
        self.probe_s = math.nan
        self.timed = True
        self._probes = probe.Schedule()
        self._cpu_clock = time.thread_time if torch.get_num_threads() == 1 else time.process_time
        self._cpu0 = 0.0
        self._t0 = 0.0
        self._guard: contextlib.AbstractContextManager[None] = contextlib.nullcontext()

    def __enter__(self) -> WindowClock:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        self._guard = sync_debug_guard() if self.guard else contextlib.nullcontext()
        if not self.cuda:
            self._cpu0 = self._cpu_clock()
        self._t0 = time.perf_counter()
        self._guard.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._guard.__exit__(kind, e, tb)
        if kind is None:
            if self.cuda:
                torch.cuda.synchronize(self.device)
            self.elapsed = time.perf_counter() - self._t0
            if not self.cuda:
                self.cpu_elapsed = self._cpu_clock() - self._cpu0
                self.probe_s = math.nan
                if self.timed:
                    self.probe_s = self._probes.after(self.cpu_elapsed, self._cpu_clock)


def train_unit(
    specs: list[RunSpec], train: Callable[[torch.device, list[Trajectory]], None], what: str
) -> list[Trajectory]:
    """Run ``train(device, trajectories)`` for ``specs`` (one unit of work) in the run context
    of the first spec. Never raises for a problem of the runs themselves: an exception makes
    every trajectory ``failed`` with its message and traceback (``what``, e.g. "batch_size",
    is what the out-of-memory hint suggests making smaller). ``StopRequested`` passes through.
    """
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    wall_start = time.perf_counter()
    trajs = [
        Trajectory(spec_json=s.to_json(), run_id=s.run_id, status="ok", started_at=started_at)
        for s in specs
    ]
    device, why = resolve_device(specs[0].device)
    if device is None:
        for t in trajs:
            t.status, t.message = "skipped", why
        return trajs
    try:
        with run_context(specs[0], device):
            train(device, trajs)
    except StopRequested:
        raise
    except Exception as e:  # isolate the failure to this unit
        message = describe(e)
        if isinstance(e, torch.OutOfMemoryError):
            message += f" (out of memory: try a smaller {what})"
        for t in trajs:
            t.status, t.message, t.traceback = "failed", message, traceback.format_exc()
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the next unit gets the memory back
    wall = time.perf_counter() - wall_start
    for t in trajs:
        t.wall_time_s = wall / len(trajs)
    return trajs
