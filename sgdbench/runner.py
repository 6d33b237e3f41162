"""Drive a grid: lock the folder, skip finished runs, execute the rest, commit each result."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from sgdbench.errors import SgdbenchError, UsageError
from sgdbench.executors import Activity, ExecutorOptions
from sgdbench.spec import Grid, RunSpec


class WriteError(SgdbenchError):
    """Results could not be written (disk full, permissions): exit 1, earlier results intact."""

    exit_code = 1


@dataclass
class GridOutcome:
    """What happened to a grid's runs in one ``sgdbench run``."""

    total: int
    already_complete: int
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (run_id, message)
    stalled: list[tuple[str, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # why -> runs skipped for it
    stopped_early: str = ""  # why the grid stopped before its end (--fail-fast, a failure storm)
    interrupted: bool = False  # Ctrl-C

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.counts["failed"] else 0

    def record(self, status: str, run_id: str, message: str) -> None:
        """Count one finished run (and keep why, for the ones that did not finish well)."""
        self.counts[status] += 1
        if status == "failed":
            self.failures.append((run_id, message))
        elif status == "stalled":
            self.stalled.append((run_id, message))
        elif status == "skipped":
            self.skipped[message] += 1


def prepare_out_dir(out_dir: Path, grid: Grid, allow_new_problem: bool = False) -> None:
    """Check, before anything is written, that ``grid`` may write into ``out_dir`` (a new or
    empty folder, or an sgdbench results folder of the same problem), then create it."""
    from sgdbench.store import ResultsStore

    store = ResultsStore(out_dir)
    store.check_writable()
    store.check_problem(grid.runs, allow_new_problem)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{out_dir}: cannot create results folder: {e.strerror}") from None


def pending_runs(grid: Grid, completed: set[str], force: bool) -> list[RunSpec]:
    return [s for s in grid.runs if force or s.run_id not in completed]


class StopFlag:
    """Set by the first Ctrl-C or SIGTERM (a SIGTERM is a Ctrl-C: same stop, same exit 130).
    Serially, the current run stops at its next window boundary (keeping a checkpoint if it
    makes them); with worker processes or Dask, runs in flight are abandoned (and resume from
    their last periodic checkpoint). A second signal aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.set = False

    def __call__(self) -> bool:
        return self.set

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            if self.set:
                raise KeyboardInterrupt  # the second one: abort now (the finally blocks run)
            self.set = True
            print(
                "\nsgdbench: stopping; finished runs are kept (Ctrl-C again to abort)",
                file=sys.stderr,
            )

        try:
            previous = {signum: signal.signal(signum, handler) for signum in self.SIGNALS}
        except ValueError:  # not the main thread: leave signals alone
            yield
            return
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)


def run_grid(
    grid: Grid,
    out_dir: Path,
    *,
    force: bool = False,
    executor: str = "serial",
    options: ExecutorOptions | None = None,
    fail_fast: bool = False,
    max_consecutive_failures: int = 0,
    progress: bool = True,
    allow_new_problem: bool = False,
) -> GridOutcome:
    """Run every pending run of ``grid`` into ``out_dir`` on ``executor`` (see ``executors``).

    A folder holding another problem's runs is refused unless ``allow_new_problem``."""
    from sgdbench.lock import ResultsLock

    prepare_out_dir(out_dir, grid, allow_new_problem)
    try:
        with ResultsLock(out_dir):
            return _run_locked(
                grid,
                out_dir,
                force=force,
                executor=executor,
                options=options,
                fail_fast=fail_fast,
                max_consecutive_failures=max_consecutive_failures,
                progress=progress,
                allow_new_problem=allow_new_problem,
            )
    except OSError as e:
        where = e.filename or out_dir
        raise WriteError(
            f"{where}: cannot write results: {e.strerror or e} (finished runs are kept)"
        ) from None


def _run_locked(
    grid: Grid,
    out_dir: Path,
    *,
    force: bool,
    executor: str,
    options: ExecutorOptions | None,
    fail_fast: bool,
    max_consecutive_failures: int,
    progress: bool,
    allow_new_problem: bool,
) -> GridOutcome:
    from sgdbench import checkpoint, env, executors
    from sgdbench.engine import plan
    from sgdbench.engine.eager import StopRequested
    from sgdbench.store import ResultsStore

    store = ResultsStore(out_dir)
    # Checked again under the lock: another run may have written here since.
    store.check_writable()
    store.check_problem(grid.runs, allow_new_problem)
    grid_version = store.adopt(grid.text, grid.runs)
    store.create()
    store.clean_orphans()
    environment = env.collect(grid.path.resolve().parent)
    store.write_meta(grid.text, environment)
    todo = pending_runs(grid, store.completed_ids(), force)
    ckpt_dir = str((out_dir / checkpoint.CHECKPOINT_DIR).resolve())
    todo = [dataclasses.replace(s, checkpoint_dir=ckpt_dir) if _checkpoints(s) else s for s in todo]
    if force:
        # From scratch, not from a checkpoint. The old rows stay until each new run commits
        # (the store stages the new files): a kill half way loses no run.
        for spec in todo:
            checkpoint.remove(spec)
    outcome = GridOutcome(total=len(grid.runs), already_complete=len(grid.runs) - len(todo))
    if outcome.already_complete:
        print(
            f"sgdbench: {outcome.already_complete} of {outcome.total} runs already complete, "
            "skipped (--force reruns them)",
            file=sys.stderr,
        )
    bar, write = _progress_bar(progress, len(todo), grid.name)
    stop = StopFlag()
    units = plan(todo)
    pending = PendingRows(store, units=units)
    failed_in_a_row = 0
    activity = Activity()

    def show_notes() -> None:
        while activity.notes:
            write(activity.notes.pop(0))

    results = None
    try:
        with stop.installed():
            results = executors.get(executor)(
                units, stop, options=options or ExecutorOptions(), activity=activity
            )
            for spec, traj in results:
                pending.add(
                    spec, store.write_run_files(spec, traj, environment["git_sha"], grid_version)
                )
                outcome.record(traj.status, traj.run_id, traj.message)
                show_notes()
                postfix: dict[str, int] = dict(sorted(outcome.counts.items()))
                if executor != "serial":
                    postfix["running"] = activity.running
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                failed_in_a_row = failed_in_a_row + 1 if traj.status == "failed" else 0
                if fail_fast and traj.status == "failed":
                    outcome.stopped_early = "stopped at the first failure (--fail-fast)"
                    break
                if max_consecutive_failures and failed_in_a_row >= max_consecutive_failures:
                    outcome.stopped_early = (
                        f"stopped after {failed_in_a_row} failures in a row "
                        "(--max-consecutive-failures); the remaining runs were not started"
                    )
                    break
                if stop.set:
                    outcome.interrupted = True
                    break
    except (StopRequested, KeyboardInterrupt):
        outcome.interrupted = True
    finally:
        if results is not None and hasattr(results, "close"):
            results.close()  # stop the workers now, not when the generator is collected
        bar.close()
        pending.close()
        show_notes()
    if stop.set:  # also when an executor noticed the flag first and ended quietly
        outcome.interrupted = True
    return outcome


def _checkpoints(spec: RunSpec) -> bool:
    """Whether ``spec`` writes checkpoints: periodic ones, or halving's at each rung (eager:
    each run's; stacked: its group's)."""
    return bool(spec.checkpoint_every) or spec.halving is not None


class _NoBar:
    """What the runner calls on a progress bar, for output that shows none."""

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


def _progress_bar(progress: bool, total: int, name: str) -> tuple[Any, Callable[[str], None]]:
    """A tqdm bar and its ``write`` on a terminal; else neither (nor tqdm's import)."""
    if not progress or not sys.stderr.isatty():
        return _NoBar(), lambda line: print(line, file=sys.stderr)
    from tqdm import tqdm

    bar = tqdm(total=total, desc=name, unit="run", file=sys.stderr, dynamic_ncols=True)
    return bar, lambda line: tqdm.write(line, file=sys.stderr)


class PendingRows:
    """Finished runs whose files are written but whose rows are not yet in runs.parquet.

    Rewriting runs.parquet after every run costs O(runs²) and an fsync each: a 200-member stacked
    sweep spent most of its time there. Rows are committed at most ``every_s`` after they arrive
    (a timer commits them even while the next, long run trains), every ``max_rows``, and at the
    end or on interrupt: a kill loses at most ``every_s`` of finished work, which the rerun
    redoes. A run's checkpoint is removed only once its row is committed.
    """

    def __init__(
        self,
        store: Any,
        every_s: float = 1.0,
        max_rows: int = 256,
        units: list[list[RunSpec]] | None = None,
    ) -> None:
        self.store, self.every_s, self.max_rows = store, every_s, max_rows
        self.rows: list[dict[str, Any]] = []
        self.specs: list[RunSpec] = []
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None
        # A halving unit's rows are committed together: its decisions compare every member,
        # so a rerun must find all of them committed or none (then it resumes the whole unit).
        # A stacked group's too, as one batch (one rewrite of runs.parquet, one sync), however
        # long writing its members' files takes; but at the end or on interrupt, what a stacked
        # group finished is committed like any run (``flush``).
        self.whole = {
            s.run_id: i
            for i, u in enumerate(units or [])
            if u[0].halving or (len(u) > 1 and u[0].engine == "stacked")
            for s in u
        }
        self.all_or_none = {i for i, u in enumerate(units or []) if u[0].halving}
        self.sizes = {i: len(u) for i, u in enumerate(units or [])}
        self.held: dict[int, list[tuple[RunSpec, dict[str, Any]]]] = {}

    def add(self, spec: RunSpec, row: dict[str, Any]) -> None:
        pairs = [(spec, row)]
        unit = self.whole.get(spec.run_id)
        if unit is not None:
            self.held.setdefault(unit, []).append((spec, row))
            if len(self.held[unit]) < self.sizes[unit]:
                return
            pairs = self.held.pop(unit)
        with self.lock:
            for held_spec, held_row in pairs:
                self.rows.append(held_row)
                self.specs.append(held_spec)
            if len(self.rows) >= self.max_rows:
                self._flush()
            elif self.timer is None:
                self.timer = threading.Timer(self.every_s, self.flush)
                self.timer.daemon = True
                self.timer.start()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def close(self) -> None:
        """At the end or on interrupt: commit everything written, but a halving unit only
        whole."""
        with self.lock:
            for unit in sorted(set(self.held) - self.all_or_none):
                for spec, row in self.held.pop(unit):
                    self.rows.append(row)
                    self.specs.append(spec)
            self._flush()

    def _flush(self) -> None:
        from sgdbench import checkpoint

        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.store.commit_rows(self.rows)
        for spec in self.specs:
            if not spec.keep_checkpoints:
                checkpoint.remove(spec)
        self.rows, self.specs = [], []
